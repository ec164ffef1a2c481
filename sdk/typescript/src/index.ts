/**
 * Haldir: the governance layer for AI agents.
 *
 * ```ts
 * import { HaldirClient } from '@haldir/sdk';
 * const haldir = new HaldirClient(); // HALDIR_API_KEY, HALDIR_BASE_URL
 * const session = await haldir.createSession('my-agent', { scopes: ['tool', 'spend:5'] });
 * ```
 *
 * The Vercel AI SDK integration is in `@haldir/sdk/ai`.
 * @module
 */

export { HaldirClient, DEFAULT_BASE_URL, VERSION, type HaldirClientOptions, type WriteOptions } from './client.js';
export { DEFAULT_RETRY_POLICY, retryDelay, type RetryPolicy } from './retry.js';
export {
  Governor,
  defaultScope,
  MIN_COST,
  type CostSpec,
  type GovernedCallTicket,
  type GovernorOptions,
  type ToolGovernance,
} from './governance.js';
export {
  HaldirError,
  APIConnectionError,
  ValidationError,
  AuthenticationError,
  PermissionDeniedError,
  SessionInvalidError,
  BudgetExceededError,
  PolicyDeniedError,
  ApprovalRequiredError,
  NotFoundError,
  ConflictError,
  RateLimitedError,
  ServiceUnavailableError,
  ServerError,
  errorFromResponse,
  type HaldirErrorInit,
} from './errors.js';
export type * from './types.js';
