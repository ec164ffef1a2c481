/**
 * Governing one tool call: the logic {@link governTool} (and any other
 * integration) is built on. A governed call, in order:
 *
 * 1. **Scope check**: `POST /v1/sessions/{id}/check` with the tool's scope
 *    (default `tool:<name>`). Denied → {@link PermissionDeniedError} (code
 *    `scope_denied`), or {@link SessionInvalidError} when the session is
 *    revoked, expired or unknown. The tool does not run.
 * 2. **Spend authorisation**, when the tool has a cost:
 *    `POST /v1/payments/authorize`. Over the cap → {@link BudgetExceededError};
 *    an approval rule matched → {@link ApprovalRequiredError} carrying the
 *    approval `requestId`. The tool does not run; once the request is
 *    approved, making the same call again succeeds (once).
 * 3. **Run** the tool.
 * 4. **Audit**: `POST /v1/audit` with action `tool_call` (or `tool_error`
 *    when the tool threw, which is then rethrown), the arguments, a result
 *    preview, the duration, the cost and the authorisation id.
 *
 * Cost accounting: the server counts an authorised payment toward the
 * session's spend and counts an audit entry's `cost_usd` too, so the audit
 * entry carries the cost in `details.cost_usd` and leaves `cost_usd` unset:
 * the cost is counted once, by the authorisation that enforced the cap.
 *
 * Haldir failing before the tool runs stops the call (fail closed). Failing
 * to write the audit entry after the tool ran is reported through
 * `onAuditError` (default: `console.warn`) and does not discard the result:
 * the call has happened, and a retry by the agent would do it twice.
 * @module
 */

import { HaldirClient } from './client.js';
import { HaldirError, NotFoundError, PermissionDeniedError, SessionInvalidError, ValidationError } from './errors.js';
import type { Money, SessionInfo } from './types.js';

/** A tool's cost in dollars, fixed or computed from the call's input. 0/undefined means free. */
export type CostSpec<INPUT = unknown> = Money | ((input: INPUT) => Money | undefined) | undefined;

/** Per-tool governance settings. */
export interface ToolGovernance<INPUT = unknown> {
  /** The session scope the tool needs. Default `tool:<name>`. */
  scope?: string;
  /** Dollars per call (at least 0.01), authorised against the session's cap before the tool runs. */
  cost?: CostSpec<INPUT>;
}

/** Options of {@link Governor}. */
export interface GovernorOptions {
  /** Default: `new HaldirClient()` configured from the environment. */
  client?: HaldirClient;
  /** Put the call's input and a result preview in the audit entry (default true). */
  recordIo?: boolean;
  /** Called when an audit entry cannot be written after the tool ran. Default: `console.warn`. */
  onAuditError?: (error: HaldirError, tool: string) => void;
}

/** The smallest payment the server authorises. */
export const MIN_COST = 0.01;
/** Longest input / result text kept in an audit entry. */
export const PREVIEW_CHARS = 1000;

/**
 * The scope a tool needs unless told otherwise: `tool:<name>`, with
 * characters a scope cannot hold replaced by `_`. A session granted `tool`
 * may use every tool; `tool:search` only the `search` tool.
 */
export function defaultScope(toolName: string): string {
  return `tool:${toolName.replace(/[^A-Za-z0-9:._\-/*]/g, '_') || 'unnamed'}`;
}

function resolveCost<INPUT>(cost: CostSpec<INPUT>, tool: string, input: INPUT): number | undefined {
  const value = typeof cost === 'function' ? cost(input) : cost;
  if (value === undefined || value === null) return undefined;
  const amount = typeof value === 'number' ? value : Number(value);
  const invalid = (why: string) => new ValidationError(`tool '${tool}': ${why}`, { code: 'invalid_request', field: 'cost' });
  if (!Number.isFinite(amount) || amount < 0) throw invalid(`cost must be a non-negative number of dollars, not ${String(value)}`);
  if (amount === 0) return undefined;
  if (amount < MIN_COST) throw invalid(`cost ${String(value)} is below the smallest payment Haldir authorises ($0.01)`);
  return amount;
}

/** A JSON-safe, bounded rendering of inputs or results for the audit trail. */
export function preview(value: unknown): unknown {
  let text: string;
  try {
    text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
    if (text.length <= PREVIEW_CHARS) return JSON.parse(text) as unknown;
  } catch {
    text = String(value);
  }
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
}

/** What the checks before a call decided; pass it to {@link Governor.after}. */
export interface GovernedCallTicket {
  tool: string;
  input: unknown;
  cost: number | undefined;
  authorizationId: string | undefined;
  started: number;
  /** Extra fields for the audit entry's details (e.g. the model's tool call id). */
  context: Record<string, unknown>;
}

/**
 * Runs tool calls under one Haldir agent session.
 *
 * ```ts
 * const gov = new Governor(session.session_id);
 * const answer = await gov.call('search', { q: 'mcp' }, () => search('mcp'), { cost: 0.05 });
 * ```
 */
export class Governor {
  readonly sessionId: string;
  readonly client: HaldirClient;
  readonly recordIo: boolean;
  readonly #onAuditError: (error: HaldirError, tool: string) => void;

  constructor(sessionId: string, options: GovernorOptions = {}) {
    if (!sessionId) throw new TypeError('a Haldir sessionId is required to govern tool calls');
    this.sessionId = sessionId;
    this.client = options.client ?? new HaldirClient();
    this.recordIo = options.recordIo ?? true;
    this.#onAuditError =
      options.onAuditError ?? ((error, tool) => console.warn(`haldir: tool ${tool} ran but its audit entry could not be written: ${error.message}`));
  }

  /**
   * Check, authorise, run `run()` and audit it; resolves to what `run` returns.
   * Rejects with the {@link PermissionDeniedError} family when Haldir refuses
   * (the tool is then not run), and with whatever `run` throws.
   */
  async call<INPUT, T>(
    tool: string,
    input: INPUT,
    run: () => T | PromiseLike<T>,
    governance: ToolGovernance<INPUT> = {},
    context: Record<string, unknown> = {},
  ): Promise<T> {
    const ticket = await this.before(tool, input, governance, context);
    let result: T;
    try {
      result = await run();
    } catch (error) {
      await this.after(ticket, { error });
      throw error;
    }
    await this.after(ticket, { result });
    return result;
  }

  /**
   * Steps 1 and 2 (check and authorise), for integrations that run the tool
   * themselves (streaming tools); finish with {@link after}.
   */
  async before<INPUT>(
    tool: string,
    input: INPUT,
    governance: ToolGovernance<INPUT> = {},
    context: Record<string, unknown> = {},
  ): Promise<GovernedCallTicket> {
    const cost = resolveCost(governance.cost, tool, input);
    const scope = governance.scope ?? defaultScope(tool);
    const check = await this.client.checkPermission(this.sessionId, scope);
    if (!check.allowed) {
      const denial = await this.#diagnose(tool, scope);
      try {
        await this.client.logAction(this.sessionId, { tool, action: 'tool_denied', details: { scope, code: denial.code, reason: denial.message } });
      } catch {
        // Recording a denial is best effort; the denial itself is what matters.
      }
      throw denial;
    }
    let authorizationId: string | undefined;
    if (cost !== undefined) {
      const auth = await this.client.authorizePayment(this.sessionId, cost, { description: `tool ${tool}` });
      authorizationId = auth.authorization_id;
    }
    return { tool, input, cost, authorizationId, started: performance.now(), context };
  }

  /** Step 4: write the audit entry for a call that ran (result) or threw (error). */
  async after(ticket: GovernedCallTicket, outcome: { result?: unknown; error?: unknown }): Promise<void> {
    const details: Record<string, unknown> = { ...ticket.context, duration_ms: Math.round((performance.now() - ticket.started) * 1000) / 1000 };
    if (ticket.cost !== undefined) {
      details['cost_usd'] = ticket.cost;
      details['authorization_id'] = ticket.authorizationId;
    }
    if (this.recordIo) details['arguments'] = preview(ticket.input);
    let action = 'tool_call';
    if ('error' in outcome) {
      const error = outcome.error;
      action = 'tool_error';
      details['error_type'] = error instanceof Error ? error.name : typeof error;
      details['error'] = preview(error instanceof Error ? error.message : String(error));
    } else if (this.recordIo) {
      details['result'] = preview(outcome.result);
    }
    try {
      await this.client.logAction(this.sessionId, { tool: ticket.tool, action, details });
    } catch (error) {
      if (!(error instanceof HaldirError)) throw error;
      this.#onAuditError(error, ticket.tool);
    }
  }

  async #diagnose(tool: string, scope: string): Promise<PermissionDeniedError> {
    let info: SessionInfo | undefined;
    try {
      info = await this.client.getSession(this.sessionId);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    if (!info) {
      return new SessionInvalidError(`tool '${tool}' refused: Haldir session ${this.sessionId} does not exist in this tenant`, { code: 'session_invalid' });
    }
    if (!info.is_valid) {
      const why = info.revoked_at ? 'revoked' : 'expired';
      return new SessionInvalidError(`tool '${tool}' refused: Haldir session ${this.sessionId} is ${why}`, { code: 'session_invalid' });
    }
    return new PermissionDeniedError(`tool '${tool}' refused: Haldir session ${this.sessionId} does not grant scope '${scope}'`, {
      code: 'scope_denied',
      body: { scope, granted: info.scopes },
    });
  }
}

