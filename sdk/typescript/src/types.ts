/**
 * Response shapes of the Haldir /v1 API. The client returns the server's
 * JSON as is, so fields are snake_case as on the wire. Money is decimal
 * dollars (numbers); times are RFC 3339 UTC strings.
 * @module
 */

/** An amount of US dollars: a number, or a decimal string such as `"29.99"`. */
export type Money = number | string;

/** `POST /v1/keys`: the only time `key` is shown. */
export interface ApiKey {
  key: string;
  prefix: string;
  name: string;
  scopes: string[];
  rate_limit?: number;
  tenant_id?: string;
  created_at: string;
}

export interface ApiKeyInfo {
  prefix: string;
  name: string;
  scopes: string[];
  rate_limit?: number;
  created_at: string;
  last_used: string | null;
  revoked: boolean;
}

export interface ApiKeyList {
  keys: ApiKeyInfo[];
  count: number;
}

export interface Tenant {
  tenant_id: string;
  name: string;
  key: string;
  prefix?: string;
}

/** `POST /v1/sessions`. */
export interface Session {
  session_id: string;
  agent_id: string;
  scopes: string[];
  spend_limit: number;
  expires_at: string;
  ttl: number;
}

/** `GET /v1/sessions/{id}`. */
export interface SessionInfo {
  session_id: string;
  agent_id: string;
  scopes: string[];
  spend_limit: number;
  spent: number;
  remaining_budget: number;
  is_valid: boolean;
  created_at: string;
  expires_at: string;
  revoked_at?: string | null;
}

/** `POST /v1/sessions/{id}/check`. An unknown session is `allowed: false`. */
export interface PermissionCheck {
  allowed: boolean;
  session_id: string;
  scope: string;
}

export interface SecretStored {
  stored: boolean;
  name: string;
  version?: number;
}

export interface Secret {
  name: string;
  value: string;
}

export interface SecretList {
  secrets: string[];
  count: number;
}

/** `POST /v1/payments/authorize` when authorised (refusals throw). */
export interface PaymentAuthorization {
  authorized: true;
  authorization_id: string;
  session_id: string;
  agent_id: string;
  amount: number;
  currency: string;
  description: string;
  remaining_budget: number;
  timestamp: string;
}

/** `POST /v1/audit`. */
export interface ActionLogged {
  logged: boolean;
  entry_id: string;
  flagged: boolean;
  flag_reason: string;
}

export interface AuditEntry {
  entry_id: string;
  seq: number;
  type: string;
  session_id: string;
  agent_id: string;
  tool: string;
  action: string;
  cost_usd: number;
  flagged: boolean;
  flag_reason: string;
  timestamp: string;
  details: Record<string, unknown>;
  prev_hash: string;
  entry_hash: string;
}

/** `GET /v1/audit`: newest first; pass `next_cursor` back for the next page. */
export interface AuditPage {
  count: number;
  entries: AuditEntry[];
  next_cursor: string | null;
}

export interface SpendSummary {
  total_usd: number;
  action_count: number;
  by_tool: Record<string, number>;
}

export interface AuditVerification {
  verified: boolean;
  entries_checked: number;
  head_hash?: string;
  first_bad_seq?: number;
  reason?: string;
}

export interface Usage {
  tenant_id: string;
  month: string;
  action_count: number;
  spend_usd?: number;
}

export interface ApprovalRule {
  rule_id: string;
  type: string;
}

/** `POST /v1/approvals/request`. */
export interface ApprovalRequest {
  request_id: string;
  status: 'pending';
  expires_at?: string;
}

/** `GET /v1/approvals/{id}`. */
export interface Approval {
  request_id: string;
  status: 'pending' | 'approved' | 'denied' | 'expired';
  agent_id?: string;
  session_id?: string;
  tool?: string;
  action?: string;
  amount?: number;
  reason?: string;
  decided_by?: string;
  decision_note?: string;
  expires_at?: string;
}

export interface ApprovalDecision {
  approved?: boolean;
  denied?: boolean;
  request_id: string;
}

export interface PendingApprovals {
  count: number;
  requests: Approval[];
}

export interface Webhook {
  webhook_id: string;
  url: string;
  name?: string;
  events: string[];
  /** Shown only when the webhook is created. */
  secret?: string;
  active?: boolean;
  fire_count?: number;
  fail_count?: number;
}

export interface WebhookDelivery {
  delivery_id: string;
  event_id: string;
  webhook_id: string;
  event_type: string;
  attempt: number;
  status_code: number;
  error: string;
  duration_ms: number;
  created_at: string;
}

export interface ProxyTool {
  name: string;
  description: string;
  upstream: string;
}

export interface ProxyPolicy {
  policy_id: string;
  type: string;
}

/** Filters of the audit trail queries. `since`/`until` are RFC 3339. */
export interface AuditFilters {
  session_id?: string;
  agent_id?: string;
  tool?: string;
  flagged?: boolean;
  since?: string;
  until?: string;
}

/** A JSON object as the API returns it, for the less structured responses. */
export type JsonObject = Record<string, unknown>;
