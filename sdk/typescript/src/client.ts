import { APIConnectionError, HaldirError, errorFromResponse, parseRetryAfter } from './errors.js';
import { DEFAULT_RETRY_POLICY, RETRY_STATUSES, retryDelay, sleep, type RetryPolicy } from './retry.js';
import type {
  ActionLogged,
  ApiKey,
  ApiKeyList,
  Approval,
  ApprovalDecision,
  ApprovalRequest,
  ApprovalRule,
  AuditEntry,
  AuditFilters,
  AuditPage,
  AuditVerification,
  JsonObject,
  Money,
  PaymentAuthorization,
  PendingApprovals,
  PermissionCheck,
  ProxyPolicy,
  ProxyTool,
  Secret,
  SecretList,
  SecretStored,
  Session,
  SessionInfo,
  SpendSummary,
  Tenant,
  Usage,
  Webhook,
  WebhookDelivery,
} from './types.js';

export const VERSION = '0.1.0';
export const DEFAULT_BASE_URL = 'http://localhost:8000';

/** Options of {@link HaldirClient}. */
export interface HaldirClientOptions {
  /** An `hld_` key; defaults to `HALDIR_API_KEY`. Only `createKey` on a fresh install works without one. */
  apiKey?: string;
  /** Defaults to `HALDIR_BASE_URL`, else `http://localhost:8000`. */
  baseUrl?: string;
  /** Milliseconds for each HTTP attempt. Default 30000. */
  timeoutMs?: number;
  /** Retries on 429, 503 and connection failures (default 2). Shorthand for `retry.maxRetries`. */
  maxRetries?: number;
  /** The full retry policy, when more control is needed. */
  retry?: Partial<RetryPolicy>;
  /** A `fetch` to use instead of the global one (proxies, instrumentation). */
  fetch?: typeof fetch;
  /** A `Haldir-Position` to start from, e.g. another client's {@link HaldirClient.position}. */
  position?: number;
}

/** Options every write accepts. */
export interface WriteOptions {
  /**
   * The Idempotency-Key to send. By default every write gets a fresh UUID,
   * kept across retries; choose one to make a write exactly-once across
   * process restarts (same key + same body replays the original response).
   */
  idempotencyKey?: string;
}

interface Call {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  /** Query parameters; undefined values are left out. */
  query?: object;
  body?: object;
  headers?: Record<string, string>;
  /** Send an Idempotency-Key (every POST that writes). */
  idempotent?: boolean;
  idempotencyKey?: string | undefined;
  /** Return the body as text (exports). */
  raw?: boolean;
}

/** The ledger position a write reached (in responses) or a read must see (in requests). */
const POSITION_HEADER = 'Haldir-Position';

/** A Haldir-Position header's value, or undefined unless it is digits naming a safe integer. */
function parsePosition(value: string | null): number | undefined {
  if (!value || !/^[0-9]+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

const FINAL_APPROVAL_STATUSES = new Set(['approved', 'denied', 'expired']);

function env(name: string): string | undefined {
  const value = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  return value || undefined;
}

/** Drop the keys whose value is undefined, so server defaults apply. */
function compact<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const seg = (s: string): string => encodeURIComponent(s);

/**
 * Client for the Haldir /v1 REST API.
 *
 * ```ts
 * const haldir = new HaldirClient({ apiKey: 'hld_...', baseUrl: 'http://localhost:8000' });
 * const session = await haldir.createSession('my-agent', { scopes: ['read', 'spend:50'] });
 * await haldir.authorizePayment(session.session_id, 29.99);
 * await haldir.logAction(session.session_id, { tool: 'stripe', action: 'charge' });
 * await haldir.revokeSession(session.session_id);
 * ```
 *
 * Every method resolves to the server's JSON (snake_case, as on the wire)
 * and rejects with a {@link HaldirError} subclass. Every write carries an
 * `Idempotency-Key`, kept across retries, so a retried write runs once.
 *
 * The client remembers the highest `Haldir-Position` any response named
 * ({@link HaldirClient.position}) and sends it on every later request: a
 * session consistency token, so that behind a load balancer each replica
 * answers only once it shows this client's own writes (read-your-writes
 * across replicas).
 */
export class HaldirClient {
  readonly baseUrl: string;
  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number;
  readonly #retry: RetryPolicy;
  readonly #fetch: typeof fetch;
  #position = 0;

  constructor(options: HaldirClientOptions = {}) {
    this.#apiKey = options.apiKey ?? env('HALDIR_API_KEY');
    this.baseUrl = (options.baseUrl ?? env('HALDIR_BASE_URL') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    if (options.maxRetries !== undefined) this.#retry.maxRetries = options.maxRetries;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    if (options.position !== undefined) {
      if (!Number.isSafeInteger(options.position) || options.position < 0) {
        throw new RangeError(`position must be a ledger position (a non-negative integer), not ${options.position}`);
      }
      this.#position = options.position;
    }
  }

  /** The highest `Haldir-Position` any response named (0 before any): the token every request sends back. */
  get position(): number {
    return this.#position;
  }

  /** Keeps the API key out of logs and `console.log(client)`. */
  toJSON(): { baseUrl: string } {
    return { baseUrl: this.baseUrl };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `HaldirClient { baseUrl: '${this.baseUrl}' }`;
  }

  // Transport

  async #send<T>(call: Call): Promise<T> {
    const url = new URL(this.baseUrl + call.path);
    for (const [k, v] of Object.entries(call.query ?? {}) as [string, unknown][]) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': `haldir-typescript/${VERSION}`, ...call.headers };
    if (this.#apiKey) headers['Authorization'] = `Bearer ${this.#apiKey}`;
    let body: string | undefined;
    if (call.method === 'POST') {
      body = JSON.stringify(call.body ?? {});
      headers['Content-Type'] = 'application/json';
      // Fixed once per call, so every retry of the call sends the same key.
      if (call.idempotent !== false || call.idempotencyKey) headers['Idempotency-Key'] = call.idempotencyKey ?? crypto.randomUUID();
    }
    for (let attempt = 1; ; attempt++) {
      if (this.#position > 0) headers[POSITION_HEADER] = String(this.#position);
      let response: Response;
      try {
        response = await this.#fetch(url, { method: call.method, headers, body, signal: AbortSignal.timeout(this.#timeoutMs) });
      } catch (cause) {
        const delay = retryDelay(this.#retry, attempt);
        if (delay === undefined) {
          const why = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
          throw new APIConnectionError(`could not reach the Haldir server for ${call.method} ${call.path} after ${attempt} attempt(s): ${why}`, { cause });
        }
        await sleep(delay);
        continue;
      }
      this.#position = Math.max(this.#position, parsePosition(response.headers.get(POSITION_HEADER)) ?? 0);
      if (RETRY_STATUSES.has(response.status)) {
        const delay = retryDelay(this.#retry, attempt, parseRetryAfter(response.headers.get('retry-after')));
        if (delay !== undefined) {
          await response.body?.cancel();
          await sleep(delay);
          continue;
        }
      }
      return this.#decode<T>(response, call.raw ?? false);
    }
  }

  async #decode<T>(response: Response, raw: boolean): Promise<T> {
    const text = await response.text();
    if (response.ok) {
      if (raw) return text as T;
      if (!text) return {} as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new HaldirError(`the Haldir server answered HTTP ${response.status} with a body that is not JSON`, {
          status: response.status,
          requestId: response.headers.get('x-request-id') ?? undefined,
        });
      }
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    throw errorFromResponse(response.status, body, response.headers);
  }

  #post<T>(path: string, body: object, options?: WriteOptions): Promise<T> {
    return this.#send<T>({ method: 'POST', path, body: compact(body), idempotencyKey: options?.idempotencyKey });
  }

  // Keys and tenants

  /**
   * Create an API key (`admin:write`); the response is the only time `key`
   * is shown. On a fresh install this needs no API key and creates the first
   * tenant. `scopes` defaults to `["*"]`; `rate_limit` is requests a minute.
   */
  createKey(params: { name?: string; scopes?: string[]; rate_limit?: number } = {}, options?: WriteOptions): Promise<ApiKey> {
    return this.#post('/v1/keys', params, options);
  }

  /** List this tenant's API keys (never the keys themselves). */
  listKeys(): Promise<ApiKeyList> {
    return this.#send({ method: 'GET', path: '/v1/keys' });
  }

  /** Revoke the API key with this prefix. */
  revokeKey(prefix: string): Promise<{ revoked: boolean; prefix: string }> {
    return this.#send({ method: 'DELETE', path: `/v1/keys/${seg(prefix)}` });
  }

  /** Create a tenant and its first `*` key. Operator route: use the server's `HALDIR_ADMIN_TOKEN` as `apiKey`. */
  createTenant(name: string, options?: WriteOptions): Promise<Tenant> {
    return this.#post('/v1/tenants', { name }, options);
  }

  // Sessions

  /**
   * Create a governed agent session.
   * @param agentId who the session is for (at most 128 characters).
   * @param params.scopes what it may do; default `["read", "browse"]`. A scope
   *   grants its children (`write` grants `write:files`); `spend:N` caps spend at N dollars.
   * @param params.ttl lifetime in seconds (default 3600, at most 30 days).
   * @param params.spend_limit the spend cap in dollars (overrides `spend:N`).
   *   A session without a cap cannot spend.
   */
  createSession(agentId: string, params: { scopes?: string[]; ttl?: number; spend_limit?: Money } = {}, options?: WriteOptions): Promise<Session> {
    return this.#post('/v1/sessions', { agent_id: agentId, ...params, spend_limit: toMoney(params.spend_limit) }, options);
  }

  /** A session with its spend and validity. Unknown → {@link NotFoundError}. */
  getSession(sessionId: string): Promise<SessionInfo> {
    return this.#send({ method: 'GET', path: `/v1/sessions/${seg(sessionId)}` });
  }

  /** Revoke a session at once; every later check and payment on it fails. */
  revokeSession(sessionId: string): Promise<{ revoked: boolean; session_id: string }> {
    return this.#send({ method: 'DELETE', path: `/v1/sessions/${seg(sessionId)}` });
  }

  /**
   * Whether the session is valid and grants `scope`. Resolves (does not
   * throw) on a denial; an unknown session is `allowed: false`.
   */
  checkPermission(sessionId: string, scope: string): Promise<PermissionCheck> {
    // A read that happens to be a POST: safe to retry as is, so no Idempotency-Key.
    return this.#send({ method: 'POST', path: `/v1/sessions/${seg(sessionId)}/check`, body: { scope }, idempotent: false });
  }

  // Vault

  /** Store (or version) an encrypted secret; reading it needs a session holding `scope_required` (default `read`). */
  storeSecret(name: string, value: string, params: { scope_required?: string } = {}, options?: WriteOptions): Promise<SecretStored> {
    return this.#post('/v1/secrets', { name, value, ...params }, options);
  }

  /** Read a secret. The server requires a valid session holding the secret's `scope_required`. */
  getSecret(name: string, sessionId?: string): Promise<Secret> {
    return this.#send({ method: 'GET', path: `/v1/secrets/${seg(name)}`, headers: sessionId ? { 'X-Session-ID': sessionId } : {} });
  }

  /** Secret names (never values). */
  listSecrets(): Promise<SecretList> {
    return this.#send({ method: 'GET', path: '/v1/secrets' });
  }

  /** Delete a secret; its plaintext becomes unrecoverable. */
  deleteSecret(name: string): Promise<{ deleted: boolean; name: string }> {
    return this.#send({ method: 'DELETE', path: `/v1/secrets/${seg(name)}` });
  }

  // Payments

  /**
   * Authorise spending `amount` dollars (0.01 to 1,000,000) against the
   * session's cap; the amount counts toward the session's spend.
   * @throws {BudgetExceededError} the amount does not fit (or the session has no cap).
   * @throws {SessionInvalidError} the session is revoked or expired.
   * @throws {ApprovalRequiredError} an approval rule matched: approve
   *   `err.requestId`, then make the same call again.
   */
  authorizePayment(
    sessionId: string,
    amount: Money,
    params: { currency?: string; description?: string } = {},
    options?: WriteOptions,
  ): Promise<PaymentAuthorization> {
    return this.#post('/v1/payments/authorize', { session_id: sessionId, amount: toMoney(amount), ...params }, options);
  }

  // Audit

  /**
   * Append an action to the tamper-evident audit trail. `cost_usd` counts
   * toward the session's spend (do not also pass an amount already
   * authorised with {@link authorizePayment}). The server may flag the entry.
   */
  logAction(
    sessionId: string,
    params: { action: string; tool?: string; cost_usd?: Money; details?: Record<string, unknown> },
    options?: WriteOptions,
  ): Promise<ActionLogged> {
    return this.#post('/v1/audit', { session_id: sessionId, ...params, cost_usd: toMoney(params.cost_usd) }, options);
  }

  /** One page of the audit trail, newest first (`limit` 1–1000, default 100); pass `next_cursor` as `cursor` for the next. */
  getAuditTrail(params: AuditFilters & { limit?: number; cursor?: string } = {}): Promise<AuditPage> {
    return this.#send({ method: 'GET', path: '/v1/audit', query: params });
  }

  /** Every matching audit entry, newest first, fetching pages as needed. */
  async *iterAuditTrail(filters: AuditFilters = {}, pageSize = 100): AsyncGenerator<AuditEntry> {
    let cursor: string | undefined;
    do {
      const page = await this.getAuditTrail({ ...filters, limit: pageSize, ...(cursor ? { cursor } : {}) });
      yield* page.entries;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** Spend summary `{total_usd, action_count, by_tool}`, optionally for one session or agent. */
  getSpend(params: { session_id?: string; agent_id?: string } = {}): Promise<SpendSummary> {
    return this.#send({ method: 'GET', path: '/v1/audit/spend', query: params });
  }

  /** Verify the tenant's whole hash chain server-side. */
  verifyAudit(): Promise<AuditVerification> {
    return this.#send({ method: 'GET', path: '/v1/audit/verify' });
  }

  /** The audit trail as JSONL (ending with a manifest line) or CSV text. */
  exportAudit(params: AuditFilters & { format?: 'jsonl' | 'csv' } = {}): Promise<string> {
    return this.#send({ method: 'GET', path: '/v1/audit/export', query: params, raw: true });
  }

  /** The signed Merkle tree head of the audit log. */
  getTreeHead(): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/audit/tree-head' });
  }

  /** An RFC 9162 inclusion proof for one audit entry. */
  getInclusionProof(entryId: string): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: `/v1/audit/inclusion-proof/${seg(entryId)}` });
  }

  /** An RFC 9162 consistency proof between two tree sizes. */
  getConsistencyProof(first: number, second: number): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/audit/consistency-proof', query: { first, second } });
  }

  // Approvals

  /** Add an approval rule, e.g. `{type: 'spend_over', threshold: 100}` or `{type: 'tool_match', tools: ['delete_repo']}`. */
  createApprovalRule(rule: { type: string } & Record<string, unknown>, options?: WriteOptions): Promise<ApprovalRule> {
    return this.#post('/v1/approvals/rules', rule, options);
  }

  /** Ask a human to approve something; resolves to `{request_id, status: "pending", expires_at}`. */
  requestApproval(
    sessionId: string,
    params: { tool?: string; action?: string; amount?: Money; reason?: string; details?: Record<string, unknown>; ttl?: number } = {},
    options?: WriteOptions,
  ): Promise<ApprovalRequest> {
    return this.#post('/v1/approvals/request', { session_id: sessionId, ...params, amount: toMoney(params.amount) }, options);
  }

  /** An approval request; `status` is pending, approved, denied or expired. */
  getApproval(requestId: string): Promise<Approval> {
    return this.#send({ method: 'GET', path: `/v1/approvals/${seg(requestId)}` });
  }

  /** Approve a pending request. A second decision throws {@link ConflictError}. */
  approve(requestId: string, params: { decided_by?: string; note?: string } = {}, options?: WriteOptions): Promise<ApprovalDecision> {
    return this.#post(`/v1/approvals/${seg(requestId)}/approve`, params, options);
  }

  /** Deny a pending request. A second decision throws {@link ConflictError}. */
  deny(requestId: string, params: { decided_by?: string; note?: string } = {}, options?: WriteOptions): Promise<ApprovalDecision> {
    return this.#post(`/v1/approvals/${seg(requestId)}/deny`, params, options);
  }

  /** Approval requests still waiting for a decision. */
  listPendingApprovals(params: { agent_id?: string } = {}): Promise<PendingApprovals> {
    return this.#send({ method: 'GET', path: '/v1/approvals/pending', query: params });
  }

  /**
   * Poll an approval request until it is decided or expires, and resolve to
   * it; only `status === "approved"` means the call may be made again.
   * Rejects with a {@link HaldirError} (code `approval_timeout`) when still
   * pending after `timeoutMs`.
   */
  async waitForApproval(requestId: string, { timeoutMs = 300_000, pollIntervalMs = 2000 } = {}): Promise<Approval> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const approval = await this.getApproval(requestId);
      if (FINAL_APPROVAL_STATUSES.has(approval.status)) return approval;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new HaldirError(`approval request ${requestId} is still pending after ${timeoutMs} ms`, { code: 'approval_timeout' });
      await sleep(Math.min(pollIntervalMs, remaining));
    }
  }

  // Webhooks

  /** Register a webhook (`events` default `["all"]`); its `secret` is shown once. */
  createWebhook(url: string, params: { name?: string; events?: string[] } = {}, options?: WriteOptions): Promise<Webhook> {
    return this.#post('/v1/webhooks', { url, ...params }, options);
  }

  /** Registered webhooks with their delivery counts. */
  listWebhooks(): Promise<{ webhooks: Webhook[] }> {
    return this.#send({ method: 'GET', path: '/v1/webhooks' });
  }

  /** Issue a new signing secret; the old one stays valid for `grace_seconds`. */
  rotateWebhookSecret(webhookId: string, params: { grace_seconds?: number } = {}, options?: WriteOptions): Promise<JsonObject> {
    return this.#post(`/v1/webhooks/${seg(webhookId)}/rotate-secret`, params, options);
  }

  /** Recent webhook delivery attempts. */
  listWebhookDeliveries(params: { limit?: number; event_id?: string } = {}): Promise<{ deliveries: WebhookDelivery[] }> {
    return this.#send({ method: 'GET', path: '/v1/webhooks/deliveries', query: params });
  }

  // Proxy

  /** Register an upstream MCP server by `url` (HTTP/SSE) or `command` (stdio argv). */
  registerUpstream(
    name: string,
    params: { url?: string; command?: string[]; env?: Record<string, string> },
    options?: WriteOptions,
  ): Promise<JsonObject> {
    return this.#post('/v1/proxy/upstreams', { name, ...params }, options);
  }

  /** Upstream MCP servers with their health. */
  listUpstreams(): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/proxy/upstreams' });
  }

  /** Tools reachable through the proxy. */
  listProxyTools(): Promise<{ count: number; tools: ProxyTool[] }> {
    return this.#send({ method: 'GET', path: '/v1/proxy/tools' });
  }

  /**
   * Call an upstream tool through the proxy; resolves to the MCP
   * `CallToolResult`. A refusal throws ({@link PolicyDeniedError},
   * {@link ApprovalRequiredError}, ...).
   */
  callTool(tool: string, args: Record<string, unknown>, sessionId: string, options?: WriteOptions): Promise<JsonObject> {
    return this.#post('/v1/proxy/call', { tool, arguments: args, session_id: sessionId }, options);
  }

  /** Add a proxy policy, e.g. `{type: 'deny_list', tools: ['rm']}`. */
  createProxyPolicy(policy: { type: string } & Record<string, unknown>, options?: WriteOptions): Promise<ProxyPolicy> {
    return this.#post('/v1/proxy/policies', policy, options);
  }

  /** The proxy policies in force. */
  listProxyPolicies(): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/proxy/policies' });
  }

  // Platform

  /** Actions and spend for a month (`"2026-04"`; default the current one). */
  getUsage(params: { month?: string } = {}): Promise<Usage> {
    return this.#send({ method: 'GET', path: '/v1/usage', query: params });
  }

  /** This tenant's counts. */
  getMetrics(): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/metrics' });
  }

  /** What `haldir overview` shows. */
  getOverview(): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/admin/overview' });
  }

  /** Component status (no API key needed). */
  getStatus(): Promise<JsonObject> {
    return this.#send({ method: 'GET', path: '/v1/status' });
  }
}

/** Money goes on the wire as a JSON number; decimal strings are converted. */
function toMoney(value: Money | undefined): number | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'number' ? value : Number(value);
}
