"""Response shapes of the Haldir /v1 API, as TypedDicts.

The clients return the decoded JSON as plain dicts (``session["session_id"]``),
typed with these classes so editors and type checkers know the fields. Money
is decimal dollars (JSON numbers, so ``float`` here); times are RFC 3339 UTC
strings. ``total=False`` marks shapes whose fields are not all guaranteed.
"""

from __future__ import annotations

from typing import Any, List, Dict, Optional, TypedDict


class ApiKey(TypedDict, total=False):
    """``POST /v1/keys``: the only time the key itself is shown."""

    key: str
    prefix: str
    name: str
    scopes: List[str]
    rate_limit: int
    tenant_id: str
    created_at: str


class ApiKeyInfo(TypedDict, total=False):
    prefix: str
    name: str
    scopes: List[str]
    rate_limit: int
    created_at: str
    last_used: Optional[str]
    revoked: bool


class ApiKeyList(TypedDict):
    keys: List[ApiKeyInfo]
    count: int


class KeyRevoked(TypedDict):
    revoked: bool
    prefix: str


class Tenant(TypedDict, total=False):
    tenant_id: str
    name: str
    key: str
    prefix: str


class Session(TypedDict):
    """``POST /v1/sessions``."""

    session_id: str
    agent_id: str
    scopes: List[str]
    spend_limit: float
    expires_at: str
    ttl: int


class SessionInfo(TypedDict, total=False):
    """``GET /v1/sessions/{id}``."""

    session_id: str
    agent_id: str
    scopes: List[str]
    spend_limit: float
    spent: float
    remaining_budget: float
    is_valid: bool
    created_at: str
    expires_at: str
    revoked_at: Optional[str]


class SessionRevoked(TypedDict):
    revoked: bool
    session_id: str


class PermissionCheck(TypedDict):
    """``POST /v1/sessions/{id}/check``. An unknown session is ``allowed: False``."""

    allowed: bool
    session_id: str
    scope: str


class SecretStored(TypedDict, total=False):
    stored: bool
    name: str
    version: int


class Secret(TypedDict):
    name: str
    value: str


class SecretList(TypedDict):
    secrets: List[str]
    count: int


class SecretDeleted(TypedDict):
    deleted: bool
    name: str


class PaymentAuthorization(TypedDict, total=False):
    """``POST /v1/payments/authorize`` when authorised (refusals raise)."""

    authorized: bool
    authorization_id: str
    session_id: str
    agent_id: str
    amount: float
    currency: str
    description: str
    remaining_budget: float
    timestamp: str


class ActionLogged(TypedDict, total=False):
    """``POST /v1/audit``."""

    logged: bool
    entry_id: str
    flagged: bool
    flag_reason: str


class AuditEntry(TypedDict, total=False):
    entry_id: str
    seq: int
    type: str
    session_id: str
    agent_id: str
    tool: str
    action: str
    cost_usd: float
    flagged: bool
    flag_reason: str
    timestamp: str
    details: Dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditPage(TypedDict):
    """``GET /v1/audit``: newest first; pass ``next_cursor`` back for the next page."""

    count: int
    entries: List[AuditEntry]
    next_cursor: Optional[str]


class SpendSummary(TypedDict):
    total_usd: float
    action_count: int
    by_tool: Dict[str, float]


class AuditVerification(TypedDict, total=False):
    verified: bool
    entries_checked: int
    head_hash: str
    first_bad_seq: int
    reason: str


class Usage(TypedDict, total=False):
    tenant_id: str
    month: str
    action_count: int
    spend_usd: float


class ApprovalRule(TypedDict, total=False):
    rule_id: str
    type: str


class ApprovalRequest(TypedDict, total=False):
    """``POST /v1/approvals/request``."""

    request_id: str
    status: str
    expires_at: str


class Approval(TypedDict, total=False):
    """``GET /v1/approvals/{id}``. ``status`` is pending, approved, denied or expired."""

    request_id: str
    status: str
    agent_id: str
    session_id: str
    tool: str
    action: str
    amount: float
    reason: str
    decided_by: str
    decision_note: str
    expires_at: str


class ApprovalDecision(TypedDict, total=False):
    approved: bool
    denied: bool
    request_id: str


class PendingApprovals(TypedDict):
    count: int
    requests: List[Approval]


class Webhook(TypedDict, total=False):
    webhook_id: str
    url: str
    name: str
    events: List[str]
    secret: str
    active: bool
    fire_count: int
    fail_count: int


class WebhookList(TypedDict):
    webhooks: List[Webhook]


class WebhookDelivery(TypedDict, total=False):
    delivery_id: str
    event_id: str
    webhook_id: str
    event_type: str
    attempt: int
    status_code: int
    error: str
    duration_ms: float
    created_at: str


class WebhookDeliveries(TypedDict):
    deliveries: List[WebhookDelivery]


class ProxyTool(TypedDict, total=False):
    name: str
    description: str
    upstream: str


class ProxyTools(TypedDict):
    count: int
    tools: List[ProxyTool]


class ProxyPolicy(TypedDict, total=False):
    policy_id: str
    type: str


__all__ = [name for name in dict(globals()) if name[:1].isupper() and name not in {"Any", "List", "Dict", "Optional", "TypedDict"}]
