/**
 * Typed errors raised by the Haldir SDK.
 *
 * Every error the server returns is JSON `{error, code, request_id, ...}`;
 * {@link errorFromResponse} turns it into the most specific class below, so
 * callers can `instanceof BudgetExceededError` instead of parsing codes.
 *
 * ```
 * HaldirError
 * ├── APIConnectionError          the server could not be reached
 * ├── ValidationError             400 / 413 / 415 (bad input)
 * ├── AuthenticationError         401 (missing, unknown or revoked API key)
 * ├── PermissionDeniedError       403, and scope denials raised by governTool
 * │   ├── SessionInvalidError     the agent session is revoked or expired
 * │   ├── BudgetExceededError     the spend would exceed the session's cap
 * │   ├── PolicyDeniedError       a proxy policy refused the call
 * │   └── ApprovalRequiredError   a human must approve first (carries requestId)
 * ├── NotFoundError               404
 * ├── ConflictError               409, and 422 idempotency_key_reused
 * ├── RateLimitedError            429 (carries retryAfter)
 * ├── ServiceUnavailableError     503
 * └── ServerError                 any other 5xx
 * ```
 *
 * No message ever contains the API key.
 * @module
 */

/** Fields every {@link HaldirError} may carry. */
export interface HaldirErrorInit {
  /** The HTTP status; undefined when no response was involved. */
  status?: number | undefined;
  /** The server's snake_case code (`budget_exceeded`, ...) or an SDK code such as `scope_denied`. */
  code?: string | undefined;
  /** The server's request id; quote it when reporting a problem. */
  requestId?: string | undefined;
  /** The request field the server blamed. */
  field?: string | undefined;
  /** The decoded error body. */
  body?: Record<string, unknown> | undefined;
  /** The underlying error, if any. */
  cause?: unknown;
}

/** Base class of every error raised by the SDK. */
export class HaldirError extends Error {
  readonly status: number | undefined;
  readonly code: string | undefined;
  requestId: string | undefined;
  readonly field: string | undefined;
  readonly body: Record<string, unknown>;

  constructor(message: string, init: HaldirErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.field = init.field;
    this.body = init.body ?? {};
  }

  override toString(): string {
    const extras: string[] = [];
    if (this.code) extras.push(`code=${this.code}`);
    if (this.status !== undefined) extras.push(`status=${this.status}`);
    if (this.field) extras.push(`field=${this.field}`);
    if (this.requestId) extras.push(`request_id=${this.requestId}`);
    return `${this.name}: ${this.message}${extras.length ? ` (${extras.join(', ')})` : ''}`;
  }
}

/** The request never got an HTTP response (refused, timed out, reset). */
export class APIConnectionError extends HaldirError {}

/** The server rejected the request's input (400, 413 or 415); `field` names the culprit. */
export class ValidationError extends HaldirError {}

/** The API key is missing, unknown or revoked (401). */
export class AuthenticationError extends HaldirError {}

/** The caller may not do this (403), or governTool's scope check failed. */
export class PermissionDeniedError extends HaldirError {}

/** The agent session is revoked, expired or unknown: nothing more may run on it. */
export class SessionInvalidError extends PermissionDeniedError {}

/** The amount does not fit the session's remaining spend cap. */
export class BudgetExceededError extends PermissionDeniedError {
  /** What the session can still spend, when the server said. */
  get remainingBudget(): number | undefined {
    const v = this.body['remaining_budget'];
    return typeof v === 'number' ? v : undefined;
  }
}

/** A proxy policy (deny list, rate limit, time window, ...) refused the call. */
export class PolicyDeniedError extends PermissionDeniedError {
  /** The policy that refused, when the server said. */
  get policyId(): string | undefined {
    const v = this.body['policy_id'];
    return typeof v === 'string' ? v : undefined;
  }
}

/**
 * A human must approve this call first. `requestId` is the *approval*
 * request to approve (`client.approve`) or wait for (`client.waitForApproval`);
 * once approved, making the same call again succeeds once. The HTTP request
 * id of the refusal is `httpRequestId`.
 */
export class ApprovalRequiredError extends PermissionDeniedError {
  readonly httpRequestId: string | undefined;

  constructor(message: string, init: HaldirErrorInit & { approvalRequestId?: string | undefined } = {}) {
    super(message, init);
    this.httpRequestId = init.requestId;
    this.requestId = init.approvalRequestId;
  }
}

/** The resource, or the endpoint, does not exist (404). */
export class NotFoundError extends HaldirError {}

/** A conflict with the current state (409), or an Idempotency-Key reused with another body (422). */
export class ConflictError extends HaldirError {}

/** Too many requests (429). `retryAfter` is the server's wait in seconds, if given. */
export class RateLimitedError extends HaldirError {
  readonly retryAfter: number | undefined;

  constructor(message: string, init: HaldirErrorInit & { retryAfter?: number | undefined } = {}) {
    super(message, init);
    this.retryAfter = init.retryAfter;
  }
}

/** The server is temporarily unable to answer (503). */
export class ServiceUnavailableError extends HaldirError {}

/** The server failed (5xx other than 503). Quote `requestId` when reporting it. */
export class ServerError extends HaldirError {}

type ErrorClass = new (message: string, init?: HaldirErrorInit) => HaldirError;

const BY_CODE: Record<string, ErrorClass> = {
  invalid_request: ValidationError,
  payload_too_large: ValidationError,
  unsupported_media_type: ValidationError,
  unauthenticated: AuthenticationError,
  insufficient_scope: PermissionDeniedError,
  session_invalid: SessionInvalidError,
  budget_exceeded: BudgetExceededError,
  policy_denied: PolicyDeniedError,
  approval_required: ApprovalRequiredError,
  not_found: NotFoundError,
  conflict: ConflictError,
  idempotency_key_reused: ConflictError,
  rate_limited: RateLimitedError,
  unavailable: ServiceUnavailableError,
};

const BY_STATUS: Record<number, ErrorClass> = {
  400: ValidationError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: ValidationError,
  415: ValidationError,
  422: ConflictError,
  429: RateLimitedError,
  503: ServiceUnavailableError,
};

/** Parse a `Retry-After` header given in seconds; HTTP dates are ignored. */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value.trim());
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

function text(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function messageOf(status: number, body: Record<string, unknown>): string {
  const direct = text(body, 'error') ?? text(body, 'reason');
  if (direct) return direct;
  // A refused proxy call answers with an MCP CallToolResult instead.
  const content = body['content'];
  if (Array.isArray(content)) {
    const texts = content
      .map((c: unknown) => (c && typeof c === 'object' ? (c as Record<string, unknown>)['text'] : undefined))
      .filter((t): t is string => typeof t === 'string');
    if (texts.length) return texts.join(' ');
  }
  return `the Haldir server answered HTTP ${status}`;
}

/**
 * Build the most specific {@link HaldirError} for an error response.
 * `body` is the decoded JSON (anything else counts as no body).
 */
export function errorFromResponse(status: number, body: unknown, headers?: Headers): HaldirError {
  const data: Record<string, unknown> = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const code = text(data, 'code');
  const cls = (code && BY_CODE[code]) || BY_STATUS[status] || (status >= 500 ? ServerError : HaldirError);
  const headerRequestId = headers?.get('x-request-id') ?? undefined;
  const init: HaldirErrorInit = {
    status,
    code,
    requestId: headerRequestId ?? text(data, 'request_id'),
    field: text(data, 'field'),
    body: data,
  };
  const message = messageOf(status, data);
  if (cls === ApprovalRequiredError) {
    // The contract carries the approval request's id in "request_id", which
    // the error envelope also uses for the HTTP request id; X-Request-ID
    // tells the two apart.
    let approvalRequestId = text(data, 'approval_request_id');
    if (approvalRequestId === undefined && text(data, 'request_id') !== headerRequestId) {
      approvalRequestId = text(data, 'request_id');
    }
    return new ApprovalRequiredError(message, { ...init, approvalRequestId });
  }
  if (cls === RateLimitedError) {
    return new RateLimitedError(message, { ...init, retryAfter: parseRetryAfter(headers?.get('retry-after')) });
  }
  return new cls(message, init);
}
