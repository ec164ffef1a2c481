"""The synchronous Haldir client."""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Mapping, Optional, Sequence, cast

import httpx

from . import _api
from ._base import Config, Money, Position, Request, RetryPolicy, connection_error, decode, prepare, retry_delay
from .errors import HaldirError
from .types import (
    ActionLogged,
    ApiKey,
    ApiKeyList,
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    ApprovalRule,
    AuditEntry,
    AuditPage,
    AuditVerification,
    KeyRevoked,
    PaymentAuthorization,
    PendingApprovals,
    PermissionCheck,
    ProxyPolicy,
    ProxyTools,
    Secret,
    SecretDeleted,
    SecretList,
    SecretStored,
    Session,
    SessionInfo,
    SessionRevoked,
    SpendSummary,
    Tenant,
    Usage,
    Webhook,
    WebhookDeliveries,
    WebhookList,
)

log = logging.getLogger("haldir")

JsonObject = dict[str, Any]

#: Approval statuses after which nothing changes any more.
FINAL_APPROVAL_STATUSES = frozenset({"approved", "denied", "expired"})


class HaldirClient:
    """Synchronous client for the Haldir /v1 REST API.

    >>> h = HaldirClient(api_key="hld_...", base_url="http://localhost:8000")
    >>> session = h.create_session("my-agent", scopes=["read", "spend:50"])
    >>> h.authorize_payment(session["session_id"], 29.99)
    >>> h.log_action(session["session_id"], tool="stripe", action="charge")
    >>> h.revoke_session(session["session_id"])

    Args:
        api_key: an ``hld_`` key; defaults to ``$HALDIR_API_KEY``. Only
            ``create_key`` on a fresh install works without one.
        base_url: defaults to ``$HALDIR_BASE_URL``, else ``http://localhost:8000``.
        timeout: seconds for each HTTP attempt.
        max_retries: retries on 429, 503 and connection failures (default 2).
        retry: the full :class:`RetryPolicy`, when more control is needed.
        http_client: an ``httpx.Client`` to use instead of the client's own
            (for proxies, custom TLS or event hooks); it is not closed by
            :meth:`close`.
        position: a ``Haldir-Position`` to start from, e.g. another client's
            :attr:`position`.

    Every method returns the decoded JSON body and raises a
    :class:`~haldir.errors.HaldirError` subclass on an error response. Every
    POST carries an ``Idempotency-Key`` (pass ``idempotency_key=`` to choose
    it), kept across retries, so a retried write runs once.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: float = 30.0,
        max_retries: Optional[int] = None,
        retry: Optional[RetryPolicy] = None,
        http_client: Optional[httpx.Client] = None,
        position: int = 0,
    ) -> None:
        self._config = Config.resolve(api_key, base_url, timeout, retry, max_retries)
        self._position = Position(position)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)

    @property
    def base_url(self) -> str:
        """The server this client talks to."""
        return self._config.base_url

    @property
    def position(self) -> int:
        """The highest ``Haldir-Position`` any response named (0 before
        any): the consistency token every request sends back. Pass it as
        ``position=`` to carry it to another client."""
        return self._position.value

    def __repr__(self) -> str:
        return f"HaldirClient(base_url={self._config.base_url!r})"

    def close(self) -> None:
        """Close the connection pool (not a pool passed in as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "HaldirClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # Transport

    def _send(self, req: Request) -> Any:
        headers, body = prepare(req)
        headers = {**self._config.headers(), **headers}
        url = self._config.base_url + req.path
        attempt = 0
        while True:
            attempt += 1
            self._position.send(headers)
            try:
                response = self._http.request(req.method, url, params=req.params, content=body, headers=headers, timeout=self._config.timeout)
            except httpx.TransportError as exc:
                delay = retry_delay(self._config.retry, attempt, exc)
                if delay is None:
                    raise connection_error(req, exc, attempt) from exc
                log.warning("haldir: %s %s failed (%s); retry %d in %.2fs", req.method, req.path, type(exc).__name__, attempt, delay)
                time.sleep(delay)
                continue
            self._position.observe(response)
            delay = retry_delay(self._config.retry, attempt, response)
            if delay is None:
                return decode(response, req.raw)
            log.warning("haldir: %s %s answered %d; retry %d in %.2fs", req.method, req.path, response.status_code, attempt, delay)
            time.sleep(delay)

    # Keys and tenants

    def create_key(
        self,
        name: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        rate_limit: Optional[int] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> ApiKey:
        """Create an API key (``admin:write``); the response is the only time
        ``key`` is shown. On a fresh install this needs no API key and creates
        the first tenant. ``scopes`` defaults to ``["*"]``; ``rate_limit`` is
        requests a minute for this key."""
        return cast(ApiKey, self._send(_api.create_key(name, scopes, rate_limit, idempotency_key)))

    def list_keys(self) -> ApiKeyList:
        """List this tenant's API keys (never the keys themselves)."""
        return cast(ApiKeyList, self._send(_api.list_keys()))

    def revoke_key(self, prefix: str) -> KeyRevoked:
        """Revoke the API key with this prefix."""
        return cast(KeyRevoked, self._send(_api.revoke_key(prefix)))

    def create_tenant(self, name: str, *, idempotency_key: Optional[str] = None) -> Tenant:
        """Create a tenant and its first ``*`` key. Operator route: construct
        the client with the server's ``HALDIR_ADMIN_TOKEN`` as ``api_key``."""
        return cast(Tenant, self._send(_api.create_tenant(name, idempotency_key)))

    # Sessions

    def create_session(
        self,
        agent_id: str,
        scopes: Optional[Sequence[str]] = None,
        ttl: Optional[int] = None,
        spend_limit: Optional[Money] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> Session:
        """Create a governed agent session.

        Args:
            agent_id: who the session is for (at most 128 characters).
            scopes: what it may do; defaults to ``["read", "browse"]``. A
                scope grants its children (``write`` grants ``write:files``);
                ``spend:N`` caps spending at N dollars.
            ttl: lifetime in seconds (default 3600, at most 30 days).
            spend_limit: the spend cap in dollars (overrides ``spend:N``).
                A session without a cap cannot spend.
        """
        return cast(Session, self._send(_api.create_session(agent_id, scopes, ttl, spend_limit, idempotency_key)))

    def get_session(self, session_id: str) -> SessionInfo:
        """Get a session with its spend and validity. Unknown → :class:`NotFoundError`."""
        return cast(SessionInfo, self._send(_api.get_session(session_id)))

    def revoke_session(self, session_id: str) -> SessionRevoked:
        """Revoke a session at once; every later check and payment on it fails."""
        return cast(SessionRevoked, self._send(_api.revoke_session(session_id)))

    def check_permission(self, session_id: str, scope: str) -> PermissionCheck:
        """Ask whether the session is valid and grants ``scope``.

        Returns ``{"allowed", "session_id", "scope"}``; it does not raise on
        a denial (an unknown session is ``allowed: False`` too).
        """
        return cast(PermissionCheck, self._send(_api.check_permission(session_id, scope)))

    # Vault

    def store_secret(self, name: str, value: str, scope_required: Optional[str] = None, *, idempotency_key: Optional[str] = None) -> SecretStored:
        """Store (or version) an encrypted secret. Reading it later needs a
        session holding ``scope_required`` (default ``read``)."""
        return cast(SecretStored, self._send(_api.store_secret(name, value, scope_required, idempotency_key)))

    def get_secret(self, name: str, session_id: Optional[str] = None) -> Secret:
        """Read a secret as ``{"name", "value"}``. The server requires a valid
        ``session_id`` holding the secret's ``scope_required``."""
        return cast(Secret, self._send(_api.get_secret(name, session_id)))

    def list_secrets(self) -> SecretList:
        """List secret names (never values)."""
        return cast(SecretList, self._send(_api.list_secrets()))

    def delete_secret(self, name: str) -> SecretDeleted:
        """Delete a secret; its plaintext becomes unrecoverable."""
        return cast(SecretDeleted, self._send(_api.delete_secret(name)))

    # Payments

    def authorize_payment(
        self,
        session_id: str,
        amount: Money,
        currency: str = "USD",
        description: str = "",
        *,
        idempotency_key: Optional[str] = None,
    ) -> PaymentAuthorization:
        """Authorise spending ``amount`` dollars (0.01 to 1,000,000) against
        the session's cap. The amount counts toward the session's spend.

        Raises:
            BudgetExceededError: the amount does not fit the remaining cap
                (or the session has no cap).
            SessionInvalidError: the session is revoked or expired.
            ApprovalRequiredError: an approval rule matched; approve
                ``exc.request_id`` and make the same call again.
        """
        return cast(PaymentAuthorization, self._send(_api.authorize_payment(session_id, amount, currency, description or None, idempotency_key)))

    # Audit

    def log_action(
        self,
        session_id: str,
        tool: Optional[str] = None,
        action: Optional[str] = None,
        cost_usd: Optional[Money] = None,
        details: Optional[Mapping[str, Any]] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> ActionLogged:
        """Append an action to the tamper-evident audit trail.

        ``action`` is required by the server. ``cost_usd`` counts toward the
        session's spend (so do not also pass an amount already authorised
        with :meth:`authorize_payment`). The server may flag the entry
        (``flagged``, ``flag_reason``), for example on a revoked session.
        """
        return cast(ActionLogged, self._send(_api.log_action(session_id, tool, action, cost_usd, details, idempotency_key)))

    def get_audit_trail(
        self,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        tool: Optional[str] = None,
        flagged: Optional[bool] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> AuditPage:
        """One page of the audit trail, newest first (``limit`` 1–1000,
        default 100). Pass ``next_cursor`` as ``cursor`` for the next page,
        or use :meth:`iter_audit_trail`. ``since``/``until`` are RFC 3339."""
        filters = _api.audit_filters(session_id, agent_id, tool, flagged, since, until)
        return cast(AuditPage, self._send(_api.get_audit_trail(filters, limit, cursor)))

    def iter_audit_trail(self, *, page_size: int = 100, **filters: Any) -> Iterator[AuditEntry]:
        """Every matching audit entry, newest first, fetching pages as needed.
        Takes the filters of :meth:`get_audit_trail`."""
        cursor: Optional[str] = None
        while True:
            page = self.get_audit_trail(limit=page_size, cursor=cursor, **filters)
            yield from page["entries"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def get_spend(self, session_id: Optional[str] = None, agent_id: Optional[str] = None) -> SpendSummary:
        """Spend summary ``{total_usd, action_count, by_tool}``, optionally for one session or agent."""
        return cast(SpendSummary, self._send(_api.get_spend(session_id, agent_id)))

    def verify_audit(self) -> AuditVerification:
        """Verify the tenant's whole hash chain server-side."""
        return cast(AuditVerification, self._send(_api.verify_audit()))

    def export_audit(self, format: str = "jsonl", **filters: Any) -> str:
        """The audit trail as JSONL (ending with a manifest line) or CSV text."""
        return cast(str, self._send(_api.export_audit(format, _api.audit_filters(**filters))))

    def get_tree_head(self) -> dict[str, Any]:
        """The signed Merkle tree head of the audit log."""
        return cast(JsonObject, self._send(_api.get_tree_head()))

    def get_inclusion_proof(self, entry_id: str) -> dict[str, Any]:
        """An RFC 9162 inclusion proof for one audit entry."""
        return cast(JsonObject, self._send(_api.get_inclusion_proof(entry_id)))

    def get_consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """An RFC 9162 consistency proof between two tree sizes."""
        return cast(JsonObject, self._send(_api.get_consistency_proof(first, second)))

    # Approvals

    def create_approval_rule(self, type: str, *, idempotency_key: Optional[str] = None, **fields: Any) -> ApprovalRule:
        """Add an approval rule, e.g. ``create_approval_rule("spend_over", threshold=100)``
        or ``create_approval_rule("tool_match", tools=["delete_repo"])``."""
        return cast(ApprovalRule, self._send(_api.create_approval_rule(type, fields, idempotency_key)))

    def request_approval(
        self,
        session_id: str,
        tool: Optional[str] = None,
        action: Optional[str] = None,
        amount: Optional[Money] = None,
        reason: Optional[str] = None,
        details: Optional[Mapping[str, Any]] = None,
        ttl: Optional[int] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> ApprovalRequest:
        """Ask a human to approve something; returns ``{request_id, status: "pending", expires_at}``."""
        body = {"session_id": session_id, "tool": tool, "action": action, "amount": amount, "reason": reason, "details": details, "ttl": ttl}
        return cast(ApprovalRequest, self._send(_api.request_approval({k: v for k, v in body.items() if v is not None}, idempotency_key)))

    def get_approval(self, request_id: str) -> Approval:
        """An approval request; ``status`` is pending, approved, denied or expired."""
        return cast(Approval, self._send(_api.get_approval(request_id)))

    def approve(self, request_id: str, decided_by: Optional[str] = None, note: Optional[str] = None, *, idempotency_key: Optional[str] = None) -> ApprovalDecision:
        """Approve a pending request. A second decision raises :class:`ConflictError`."""
        return cast(ApprovalDecision, self._send(_api.decide_approval(request_id, "approve", decided_by, note, idempotency_key)))

    def deny(self, request_id: str, decided_by: Optional[str] = None, note: Optional[str] = None, *, idempotency_key: Optional[str] = None) -> ApprovalDecision:
        """Deny a pending request. A second decision raises :class:`ConflictError`."""
        return cast(ApprovalDecision, self._send(_api.decide_approval(request_id, "deny", decided_by, note, idempotency_key)))

    def list_pending_approvals(self, agent_id: Optional[str] = None) -> PendingApprovals:
        """Approval requests still waiting for a decision."""
        return cast(PendingApprovals, self._send(_api.list_pending_approvals(agent_id)))

    def wait_for_approval(self, request_id: str, timeout: float = 300.0, poll_interval: float = 2.0) -> Approval:
        """Poll an approval request until it is decided or expires, and return it.

        Raises :class:`HaldirError` (code ``approval_timeout``) if it is still
        pending after ``timeout`` seconds. Check ``status`` on the result:
        only ``"approved"`` means the call may be made again.
        """
        deadline = time.monotonic() + timeout
        while True:
            approval = self.get_approval(request_id)
            if approval.get("status") in FINAL_APPROVAL_STATUSES:
                return approval
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HaldirError(f"approval request {request_id} is still pending after {timeout:g}s", code="approval_timeout")
            time.sleep(min(poll_interval, remaining))

    # Webhooks

    def create_webhook(self, url: str, name: Optional[str] = None, events: Optional[Sequence[str]] = None, *, idempotency_key: Optional[str] = None) -> Webhook:
        """Register a webhook (``events`` default ``["all"]``); its ``secret`` is shown once."""
        return cast(Webhook, self._send(_api.create_webhook(url, name, events, idempotency_key)))

    def list_webhooks(self) -> WebhookList:
        """Registered webhooks with their delivery counts."""
        return cast(WebhookList, self._send(_api.list_webhooks()))

    def rotate_webhook_secret(self, webhook_id: str, grace_seconds: Optional[int] = None, *, idempotency_key: Optional[str] = None) -> dict[str, Any]:
        """Issue a new signing secret; the old one stays valid for ``grace_seconds``."""
        return cast(JsonObject, self._send(_api.rotate_webhook_secret(webhook_id, grace_seconds, idempotency_key)))

    def list_webhook_deliveries(self, limit: Optional[int] = None, event_id: Optional[str] = None) -> WebhookDeliveries:
        """Recent webhook delivery attempts."""
        return cast(WebhookDeliveries, self._send(_api.list_webhook_deliveries(limit, event_id)))

    # Proxy

    def register_upstream(
        self,
        name: str,
        url: Optional[str] = None,
        *,
        command: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> dict[str, Any]:
        """Register an upstream MCP server by ``url`` (HTTP/SSE) or ``command`` (stdio argv)."""
        return cast(JsonObject, self._send(_api.register_upstream(name, url, command, env, idempotency_key)))

    def list_upstreams(self) -> dict[str, Any]:
        """Upstream MCP servers with their health."""
        return cast(JsonObject, self._send(_api.list_upstreams()))

    def list_proxy_tools(self) -> ProxyTools:
        """Tools reachable through the proxy."""
        return cast(ProxyTools, self._send(_api.list_proxy_tools()))

    def call_tool(self, tool: str, arguments: Optional[Mapping[str, Any]] = None, *, session_id: str, idempotency_key: Optional[str] = None) -> dict[str, Any]:
        """Call an upstream tool through the proxy; returns the MCP ``CallToolResult``.
        A refusal raises (:class:`PolicyDeniedError`, :class:`ApprovalRequiredError`, ...)."""
        return cast(JsonObject, self._send(_api.call_tool(tool, arguments, session_id, idempotency_key)))

    def create_proxy_policy(self, type: str, *, idempotency_key: Optional[str] = None, **fields: Any) -> ProxyPolicy:
        """Add a proxy policy, e.g. ``create_proxy_policy("deny_list", tools=["rm"])``."""
        return cast(ProxyPolicy, self._send(_api.create_proxy_policy(type, fields, idempotency_key)))

    def list_proxy_policies(self) -> dict[str, Any]:
        """The proxy policies in force."""
        return cast(JsonObject, self._send(_api.list_proxy_policies()))

    # Platform

    def get_usage(self, month: Optional[str] = None) -> Usage:
        """Actions and spend for a month (``"2026-04"``; default the current one)."""
        return cast(Usage, self._send(_api.get_usage(month)))

    def get_metrics(self) -> dict[str, Any]:
        """This tenant's counts."""
        return cast(JsonObject, self._send(_api.get_metrics()))

    def get_overview(self) -> dict[str, Any]:
        """What ``haldir overview`` shows."""
        return cast(JsonObject, self._send(_api.get_overview()))

    def get_status(self) -> dict[str, Any]:
        """Component status (no API key needed)."""
        return cast(JsonObject, self._send(_api.get_status()))
