"""Governing one tool call: the logic every framework adapter shares.

A governed call, in order:

1. **Scope check** — ``POST /v1/sessions/{id}/check`` with the tool's scope
   (default ``tool:<name>``). Denied → :class:`PermissionDeniedError` (code
   ``scope_denied``), or :class:`SessionInvalidError` when the session is
   revoked, expired or unknown. The tool does not run.
2. **Spend authorisation**, when the tool has a cost —
   ``POST /v1/payments/authorize``. Over the cap → :class:`BudgetExceededError`;
   an approval rule matched → :class:`ApprovalRequiredError` carrying the
   approval ``request_id``. The tool does not run. Once the request is
   approved, making the same call again succeeds (once).
3. **Run** the tool.
4. **Audit** — ``POST /v1/audit`` with action ``tool_call`` (or ``tool_error``
   when the tool raised, which is then re-raised), the arguments, a preview of
   the result, the duration, the cost and the authorisation id.

Cost accounting: the server counts an authorised payment toward the session's
spend, and counts an audit entry's ``cost_usd`` too. So the audit entry
carries the cost in ``details.cost_usd`` (with ``details.authorization_id``)
and leaves ``cost_usd`` unset: the cost is counted once, by the authorisation
that enforced the cap.

Failures of Haldir before the tool runs stop the call (fail closed). A failure
to write the audit entry after the tool ran is logged as a warning on the
``haldir`` logger and does not discard the tool's result: the call has
happened, and a retry by the agent would do it twice.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Awaitable, Callable, Mapping, Optional, TypeVar, Union

from ._base import Money
from .async_client import AsyncHaldirClient
from .client import HaldirClient
from .errors import HaldirError, NotFoundError, PermissionDeniedError, SessionInvalidError, ValidationError

__all__ = ["Governor", "govern", "CostSpec", "default_scope", "MIN_COST"]

log = logging.getLogger("haldir")

T = TypeVar("T")

#: A tool's cost: a fixed number of dollars, or a function of the call's
#: arguments returning one (None or 0 means free).
CostSpec = Union[Money, Callable[[Mapping[str, Any]], Optional[Money]], None]

#: The smallest payment the server authorises.
MIN_COST = Decimal("0.01")

#: Longest argument / result text kept in an audit entry.
PREVIEW_CHARS = 1000

_SCOPE_UNSAFE = re.compile(r"[^A-Za-z0-9:._\-/*]")


def default_scope(tool_name: str) -> str:
    """The scope a tool needs unless told otherwise: ``tool:<name>``, with
    characters a scope cannot hold replaced by ``_``. A session granted
    ``tool`` may use every tool; ``tool:search`` only the ``search`` tool."""
    return "tool:" + (_SCOPE_UNSAFE.sub("_", tool_name) or "unnamed")


def _resolve_cost(cost: CostSpec, tool_name: str, arguments: Mapping[str, Any]) -> Optional[Decimal]:
    value = cost(arguments) if callable(cost) else cost
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError as exc:
        raise ValidationError(f"tool {tool_name!r}: cost {value!r} is not a number of dollars", code="invalid_request", field="cost") from exc
    if not amount.is_finite() or amount < 0:
        raise ValidationError(f"tool {tool_name!r}: cost must be a non-negative number of dollars, not {value!r}", code="invalid_request", field="cost")
    if amount == 0:
        return None
    if amount < MIN_COST:
        raise ValidationError(
            f"tool {tool_name!r}: cost {value!r} is below the smallest payment Haldir authorises ($0.01)",
            code="invalid_request",
            field="cost",
        )
    return amount


def _preview(value: Any) -> Any:
    """A JSON-safe, bounded rendering of arguments or results for the audit trail."""
    try:
        text = json.dumps(value, default=str)
        if len(text) <= PREVIEW_CHARS:
            return json.loads(text)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:PREVIEW_CHARS] + "…" if len(text) > PREVIEW_CHARS else text


@dataclass
class _Ticket:
    """What the checks before a call decided."""

    tool: str
    arguments: Mapping[str, Any]
    cost: Optional[Decimal]
    authorization_id: Optional[str]
    started: float


class Governor:
    """Runs tool calls under one Haldir agent session.

    >>> gov = Governor(session["session_id"])            # HaldirClient() from the environment
    >>> gov.call("search", {"q": "mcp"}, lambda: search("mcp"), cost=0.05)

    The framework adapters (``haldir.langchain``, ``haldir.crewai``,
    ``haldir.autogen``) are thin wrappers over :meth:`call` and :meth:`acall`.

    Args:
        session_id: the agent session every call is checked against.
        client: a :class:`HaldirClient` (usable from sync and async code; async
            calls run it in a thread) or an :class:`AsyncHaldirClient` (async
            code only). Default: ``HaldirClient()`` configured from the
            environment.
        record_io: put the call's arguments and a preview of its result in
            the audit entry (turn off for sensitive tools).
    """

    def __init__(
        self,
        session_id: str,
        client: Union[HaldirClient, AsyncHaldirClient, None] = None,
        *,
        record_io: bool = True,
    ) -> None:
        if not session_id:
            raise ValueError("a Haldir session_id is required to govern tool calls")
        self.session_id = session_id
        self.client: Union[HaldirClient, AsyncHaldirClient] = client if client is not None else HaldirClient()
        self.record_io = record_io

    def __repr__(self) -> str:
        return f"Governor(session_id={self.session_id!r}, client={self.client!r})"

    # Sync

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        run: Callable[[], T],
        *,
        scope: Optional[str] = None,
        cost: CostSpec = None,
    ) -> T:
        """Check, authorise, run ``run()`` and audit it. Returns what ``run`` returns.

        Raises the :class:`PermissionDeniedError` family when Haldir refuses
        (the tool is then not run), and re-raises whatever ``run`` raises.
        """
        client = self._sync_client()
        ticket = self._before_sync(client, tool, arguments, scope, cost)
        try:
            result = run()
        except BaseException as exc:
            self._audit_sync(client, ticket, error=exc)
            raise
        self._audit_sync(client, ticket, result=result)
        return result

    def _sync_client(self) -> HaldirClient:
        if isinstance(self.client, AsyncHaldirClient):
            raise TypeError("this Governor holds an AsyncHaldirClient, which only async calls can use; pass a HaldirClient to govern sync calls")
        return self.client

    def _before_sync(self, client: HaldirClient, tool: str, arguments: Mapping[str, Any], scope: Optional[str], cost: CostSpec) -> _Ticket:
        amount = _resolve_cost(cost, tool, arguments)
        need = scope or default_scope(tool)
        if not client.check_permission(self.session_id, need)["allowed"]:
            denial = self._diagnose_sync(client, tool, need)
            self._log_denial_sync(client, tool, need, denial)
            raise denial
        authorization_id = None
        if amount is not None:
            auth = client.authorize_payment(self.session_id, amount, description=f"tool {tool}")
            authorization_id = auth.get("authorization_id")
        return _Ticket(tool, arguments, amount, authorization_id, time.monotonic())

    def _diagnose_sync(self, client: HaldirClient, tool: str, scope: str) -> PermissionDeniedError:
        try:
            info: Optional[Mapping[str, Any]] = client.get_session(self.session_id)
        except NotFoundError:
            info = None
        return _denial(self.session_id, tool, scope, info)

    def _log_denial_sync(self, client: HaldirClient, tool: str, scope: str, denial: PermissionDeniedError) -> None:
        try:
            client.log_action(self.session_id, tool=tool, action="tool_denied", details=self._denial_details(scope, denial))
        except HaldirError as exc:
            log.debug("haldir: could not record the denial of %s: %s", tool, exc)

    def _audit_sync(self, client: HaldirClient, ticket: _Ticket, result: Any = None, error: Optional[BaseException] = None) -> None:
        action, details = self._audit_entry(ticket, result, error)
        try:
            client.log_action(self.session_id, tool=ticket.tool, action=action, details=details)
        except HaldirError as exc:
            log.warning("haldir: tool %s ran but its audit entry could not be written: %s", ticket.tool, exc)

    # Async

    async def acall(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        run: Callable[[], Awaitable[T]],
        *,
        scope: Optional[str] = None,
        cost: CostSpec = None,
    ) -> T:
        """The async :meth:`call`: ``run`` returns an awaitable."""
        ticket = await self._before_async(tool, arguments, scope, cost)
        try:
            result = await run()
        except BaseException as exc:
            await self._audit_async(ticket, error=exc)
            raise
        await self._audit_async(ticket, result=result)
        return result

    async def _before_async(self, tool: str, arguments: Mapping[str, Any], scope: Optional[str], cost: CostSpec) -> _Ticket:
        amount = _resolve_cost(cost, tool, arguments)
        need = scope or default_scope(tool)
        if not (await self._client_call("check_permission", self.session_id, need))["allowed"]:
            try:
                info = await self._client_call("get_session", self.session_id)
            except NotFoundError:
                info = None
            denial = _denial(self.session_id, tool, need, info)
            try:
                await self._client_call("log_action", self.session_id, tool=tool, action="tool_denied", details=self._denial_details(need, denial))
            except HaldirError as exc:
                log.debug("haldir: could not record the denial of %s: %s", tool, exc)
            raise denial
        authorization_id = None
        if amount is not None:
            auth = await self._client_call("authorize_payment", self.session_id, amount, description=f"tool {tool}")
            authorization_id = auth.get("authorization_id")
        return _Ticket(tool, arguments, amount, authorization_id, time.monotonic())

    async def _client_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        if isinstance(self.client, AsyncHaldirClient):
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _audit_async(self, ticket: _Ticket, result: Any = None, error: Optional[BaseException] = None) -> None:
        action, details = self._audit_entry(ticket, result, error)
        try:
            await self._client_call("log_action", self.session_id, tool=ticket.tool, action=action, details=details)
        except HaldirError as exc:
            log.warning("haldir: tool %s ran but its audit entry could not be written: %s", ticket.tool, exc)

    # Shared

    def _audit_entry(self, ticket: _Ticket, result: Any, error: Optional[BaseException]) -> tuple[str, dict[str, Any]]:
        details: dict[str, Any] = {"duration_ms": round((time.monotonic() - ticket.started) * 1000, 3)}
        if ticket.cost is not None:
            details["cost_usd"] = float(ticket.cost)
            details["authorization_id"] = ticket.authorization_id
        if self.record_io:
            details["arguments"] = _preview(dict(ticket.arguments))
        if error is not None:
            details["error_type"] = type(error).__name__
            details["error"] = _preview(str(error))
            return "tool_error", details
        if self.record_io:
            details["result"] = _preview(result)
        return "tool_call", details

    @staticmethod
    def _denial_details(scope: str, denial: PermissionDeniedError) -> dict[str, Any]:
        return {"scope": scope, "code": denial.code, "reason": denial.message}


def _denial(session_id: str, tool: str, scope: str, info: Optional[Mapping[str, Any]]) -> PermissionDeniedError:
    """The error for a failed scope check, naming why it failed."""
    if info is None:
        return SessionInvalidError(f"tool {tool!r} refused: Haldir session {session_id} does not exist in this tenant", code="session_invalid")
    if not info.get("is_valid", True):
        why = "revoked" if info.get("revoked_at") else "expired"
        return SessionInvalidError(f"tool {tool!r} refused: Haldir session {session_id} is {why}", code="session_invalid")
    return PermissionDeniedError(
        f"tool {tool!r} refused: Haldir session {session_id} does not grant scope {scope!r}",
        code="scope_denied",
        body={"scope": scope, "granted": list(info.get("scopes") or [])},
    )


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns an awaitable (async functions and callables)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def call_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a call by name, for the audit trail."""
    try:
        return dict(inspect.signature(fn).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return {"args": list(args), **kwargs}


def govern(
    session_id: str,
    *,
    client: Union[HaldirClient, AsyncHaldirClient, None] = None,
    scope: Optional[str] = None,
    cost: CostSpec = None,
    name: Optional[str] = None,
    record_io: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator governing a plain function (sync or async) without any framework::

        @govern(session_id, cost=0.05)
        def search(query: str) -> str: ...

    ``name`` defaults to the function's name, ``scope`` to ``tool:<name>``.
    See :class:`Governor` for what happens on each call.
    """
    governor = Governor(session_id, client, record_io=record_io)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        tool: str = name or getattr(fn, "__name__", None) or "tool"
        if is_async_callable(fn):

            @functools.wraps(fn)
            async def governed_async(*args: Any, **kwargs: Any) -> Any:
                return await governor.acall(tool, call_arguments(fn, args, kwargs), lambda: fn(*args, **kwargs), scope=scope, cost=cost)

            return governed_async

        @functools.wraps(fn)
        def governed(*args: Any, **kwargs: Any) -> Any:
            return governor.call(tool, call_arguments(fn, args, kwargs), lambda: fn(*args, **kwargs), scope=scope, cost=cost)

        return governed

    return decorate
