"""The /v1 endpoints as request builders, shared by both clients.

Each function returns the :class:`~haldir._base.Request` for one call; the
sync and async clients only send it. Keeping the wire details here means one
place to read, and one place to change, when the contract moves.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ._base import Money, Request, compact, money, path, query


def _post(p: str, body: Mapping[str, Any], idempotency_key: Optional[str]) -> Request:
    return Request("POST", p, json=compact(body), idempotency_key=idempotency_key)


# Keys and tenants


def create_tenant(name: str, idempotency_key: Optional[str]) -> Request:
    return _post("/v1/tenants", {"name": name}, idempotency_key)


def create_key(name: Optional[str], scopes: Optional[Sequence[str]], rate_limit: Optional[int], idempotency_key: Optional[str]) -> Request:
    return _post("/v1/keys", {"name": name, "scopes": list(scopes) if scopes is not None else None, "rate_limit": rate_limit}, idempotency_key)


def list_keys() -> Request:
    return Request("GET", "/v1/keys")


def revoke_key(prefix: str) -> Request:
    return Request("DELETE", path("/v1/keys/{}", prefix))


# Sessions


def create_session(
    agent_id: str,
    scopes: Optional[Sequence[str]],
    ttl: Optional[int],
    spend_limit: Optional[Money],
    idempotency_key: Optional[str],
) -> Request:
    body = {"agent_id": agent_id, "scopes": list(scopes) if scopes is not None else None, "ttl": ttl, "spend_limit": money(spend_limit)}
    return _post("/v1/sessions", body, idempotency_key)


def get_session(session_id: str) -> Request:
    return Request("GET", path("/v1/sessions/{}", session_id))


def revoke_session(session_id: str) -> Request:
    return Request("DELETE", path("/v1/sessions/{}", session_id))


def check_permission(session_id: str, scope: str) -> Request:
    # A read that happens to be a POST: safe to retry as is, so it carries no
    # Idempotency-Key (which would cost the server a stored response per check).
    return Request("POST", path("/v1/sessions/{}/check", session_id), json={"scope": scope}, idempotent=False)


# Vault


def store_secret(name: str, value: str, scope_required: Optional[str], idempotency_key: Optional[str]) -> Request:
    return _post("/v1/secrets", {"name": name, "value": value, "scope_required": scope_required}, idempotency_key)


def get_secret(name: str, session_id: Optional[str]) -> Request:
    headers = {"X-Session-ID": session_id} if session_id else {}
    return Request("GET", path("/v1/secrets/{}", name), headers=headers)


def list_secrets() -> Request:
    return Request("GET", "/v1/secrets")


def delete_secret(name: str) -> Request:
    return Request("DELETE", path("/v1/secrets/{}", name))


# Payments


def authorize_payment(
    session_id: str, amount: Money, currency: Optional[str], description: Optional[str], idempotency_key: Optional[str]
) -> Request:
    body = {"session_id": session_id, "amount": money(amount), "currency": currency, "description": description}
    return _post("/v1/payments/authorize", body, idempotency_key)


# Audit


def log_action(
    session_id: str,
    tool: Optional[str],
    action: Optional[str],
    cost_usd: Optional[Money],
    details: Optional[Mapping[str, Any]],
    idempotency_key: Optional[str],
) -> Request:
    body = {
        "session_id": session_id,
        "tool": tool,
        "action": action,
        "cost_usd": money(cost_usd),
        "details": dict(details) if details is not None else None,
    }
    return _post("/v1/audit", body, idempotency_key)


def audit_filters(
    session_id: Optional[str] = None,
    agent_id: Optional[str] = None,
    tool: Optional[str] = None,
    flagged: Optional[bool] = None,
    since: Optional[str] = None,
    until: Optional[str] = None,
) -> dict[str, Any]:
    return {"session_id": session_id, "agent_id": agent_id, "tool": tool, "flagged": flagged, "since": since, "until": until}


def get_audit_trail(filters: Mapping[str, Any], limit: Optional[int], cursor: Optional[str]) -> Request:
    return Request("GET", "/v1/audit", params=query({**filters, "limit": limit, "cursor": cursor}))


def get_spend(session_id: Optional[str], agent_id: Optional[str]) -> Request:
    return Request("GET", "/v1/audit/spend", params=query({"session_id": session_id, "agent_id": agent_id}))


def verify_audit() -> Request:
    return Request("GET", "/v1/audit/verify")


def export_audit(format: str, filters: Mapping[str, Any]) -> Request:
    return Request("GET", "/v1/audit/export", params=query({**filters, "format": format}), raw=True)


def get_tree_head() -> Request:
    return Request("GET", "/v1/audit/tree-head")


def get_inclusion_proof(entry_id: str) -> Request:
    return Request("GET", path("/v1/audit/inclusion-proof/{}", entry_id))


def get_consistency_proof(first: int, second: int) -> Request:
    return Request("GET", "/v1/audit/consistency-proof", params={"first": first, "second": second})


# Approvals


def create_approval_rule(type: str, fields: Mapping[str, Any], idempotency_key: Optional[str]) -> Request:
    return _post("/v1/approvals/rules", {**fields, "type": type}, idempotency_key)


def request_approval(body: Mapping[str, Any], idempotency_key: Optional[str]) -> Request:
    if "amount" in body:
        body = {**body, "amount": money(body["amount"])}
    return _post("/v1/approvals/request", body, idempotency_key)


def get_approval(request_id: str) -> Request:
    return Request("GET", path("/v1/approvals/{}", request_id))


def decide_approval(request_id: str, decision: str, decided_by: Optional[str], note: Optional[str], idempotency_key: Optional[str]) -> Request:
    return _post(path("/v1/approvals/{}/" + decision, request_id), {"decided_by": decided_by, "note": note}, idempotency_key)


def list_pending_approvals(agent_id: Optional[str]) -> Request:
    return Request("GET", "/v1/approvals/pending", params=query({"agent_id": agent_id}))


# Webhooks


def create_webhook(url: str, name: Optional[str], events: Optional[Sequence[str]], idempotency_key: Optional[str]) -> Request:
    return _post("/v1/webhooks", {"url": url, "name": name, "events": list(events) if events is not None else None}, idempotency_key)


def list_webhooks() -> Request:
    return Request("GET", "/v1/webhooks")


def rotate_webhook_secret(webhook_id: str, grace_seconds: Optional[int], idempotency_key: Optional[str]) -> Request:
    return _post(path("/v1/webhooks/{}/rotate-secret", webhook_id), {"grace_seconds": grace_seconds}, idempotency_key)


def list_webhook_deliveries(limit: Optional[int], event_id: Optional[str]) -> Request:
    return Request("GET", "/v1/webhooks/deliveries", params=query({"limit": limit, "event_id": event_id}))


# Proxy


def register_upstream(
    name: str, url: Optional[str], command: Optional[Sequence[str]], env: Optional[Mapping[str, str]], idempotency_key: Optional[str]
) -> Request:
    body = {"name": name, "url": url, "command": list(command) if command is not None else None, "env": dict(env) if env is not None else None}
    return _post("/v1/proxy/upstreams", body, idempotency_key)


def list_upstreams() -> Request:
    return Request("GET", "/v1/proxy/upstreams")


def list_proxy_tools() -> Request:
    return Request("GET", "/v1/proxy/tools")


def call_tool(tool: str, arguments: Optional[Mapping[str, Any]], session_id: str, idempotency_key: Optional[str]) -> Request:
    return _post("/v1/proxy/call", {"tool": tool, "arguments": dict(arguments or {}), "session_id": session_id}, idempotency_key)


def create_proxy_policy(type: str, fields: Mapping[str, Any], idempotency_key: Optional[str]) -> Request:
    return _post("/v1/proxy/policies", {**fields, "type": type}, idempotency_key)


def list_proxy_policies() -> Request:
    return Request("GET", "/v1/proxy/policies")


# Platform


def get_usage(month: Optional[str]) -> Request:
    return Request("GET", "/v1/usage", params=query({"month": month}))


def get_metrics() -> Request:
    return Request("GET", "/v1/metrics")


def get_overview() -> Request:
    return Request("GET", "/v1/admin/overview")


def get_status() -> Request:
    return Request("GET", "/v1/status")
