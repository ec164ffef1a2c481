"""Haldir for LangChain: govern any ``langchain_core`` tool, or just watch them.

Enforcement (the tool does not run unless Haldir allows it)::

    from haldir.langchain import govern_tools
    tools = govern_tools([search, calculator], session_id, costs={"search": 0.05})

Observation only (every tool start, end and error lands in the audit trail)::

    from haldir.langchain import HaldirCallbackHandler
    agent.invoke(inputs, config={"callbacks": [HaldirCallbackHandler(session_id)]})

Requires the ``langchain`` extra (``pip install 'haldir[langchain]'``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional, Sequence, Union
from uuid import UUID

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tools import BaseTool
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("haldir.langchain needs langchain-core: pip install 'haldir[langchain]'") from exc

from .async_client import AsyncHaldirClient
from .client import HaldirClient
from .errors import HaldirError
from .governance import CostSpec, Governor, _preview

__all__ = ["GovernedTool", "govern_tool", "govern_tools", "HaldirCallbackHandler"]

log = logging.getLogger("haldir")

Client = Union[HaldirClient, AsyncHaldirClient, None]


class GovernedTool(BaseTool):
    """A LangChain tool that runs another tool under Haldir governance.

    It has the wrapped tool's name, description and argument schema, so an
    agent sees no difference. Each call is scope-checked, spend-authorised
    (when the tool has a cost), run, and audited; see
    :class:`haldir.Governor`. A refusal raises before the wrapped tool runs:
    :class:`~haldir.PermissionDeniedError` (code ``scope_denied``),
    :class:`~haldir.SessionInvalidError`, :class:`~haldir.BudgetExceededError`
    or :class:`~haldir.ApprovalRequiredError` (with ``request_id``).

    Build one with :func:`govern_tool`. The result is always plain content
    (``response_format="content"``): a wrapped ``content_and_artifact`` tool
    loses its artifact.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    wrapped: BaseTool
    """The tool being governed."""
    scope: Optional[str] = None
    """The session scope the tool needs (default ``tool:<name>``)."""
    cost: Any = None
    """Dollars per call, or a function of the arguments returning them."""

    _governor: Governor = PrivateAttr()

    @staticmethod
    def _input_and_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Union[str, dict[str, Any]], dict[str, Any]]:
        kwargs.pop("run_manager", None)
        kwargs.pop("callbacks", None)
        if args:
            return args[0], {"input": args[0]}
        return kwargs, kwargs

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        tool_input, arguments = self._input_and_arguments(args, kwargs)
        return self._governor.call(self.name, arguments, lambda: self.wrapped.run(tool_input), scope=self.scope, cost=self.cost)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        tool_input, arguments = self._input_and_arguments(args, kwargs)
        return await self._governor.acall(self.name, arguments, lambda: self.wrapped.arun(tool_input), scope=self.scope, cost=self.cost)


def govern_tool(
    tool: BaseTool,
    session_id: str,
    *,
    client: Client = None,
    scope: Optional[str] = None,
    cost: CostSpec = None,
    record_io: bool = True,
) -> GovernedTool:
    """Wrap ``tool`` so every call goes through Haldir under ``session_id``.

    Args:
        tool: any ``langchain_core.tools.BaseTool`` (``@tool`` functions,
            ``StructuredTool``, community tools, ...).
        session_id: the Haldir agent session to check and charge.
        client: a :class:`~haldir.HaldirClient` (default: from the environment)
            or an :class:`~haldir.AsyncHaldirClient` (then only ``ainvoke`` works).
        scope: the session scope required (default ``tool:<name>``).
        cost: dollars per call (at least 0.01), or a function of the call's
            arguments returning them; authorised against the session's cap
            before the tool runs.
        record_io: put arguments and a result preview in the audit entry.
    """
    governed = GovernedTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        tags=tool.tags,
        metadata=tool.metadata,
        wrapped=tool,
        scope=scope,
        cost=cost,
    )
    governed._governor = Governor(session_id, client, record_io=record_io)
    return governed


def govern_tools(
    tools: Sequence[BaseTool],
    session_id: str,
    *,
    client: Client = None,
    scopes: Optional[Mapping[str, str]] = None,
    costs: Optional[Mapping[str, CostSpec]] = None,
    record_io: bool = True,
) -> list[GovernedTool]:
    """:func:`govern_tool` for a list; ``scopes`` and ``costs`` are keyed by tool name."""
    client = client if client is not None else HaldirClient()
    return [
        govern_tool(t, session_id, client=client, scope=(scopes or {}).get(t.name), cost=(costs or {}).get(t.name), record_io=record_io)
        for t in tools
    ]


class HaldirCallbackHandler(BaseCallbackHandler):
    """Records every tool start, end and error of a LangChain run in Haldir's
    audit trail (actions ``tool_start``, ``tool_end``, ``tool_error``).

    Observation only: it never blocks a tool (use :func:`govern_tool` for
    that), and a failure to reach Haldir is logged as a warning, never raised
    into the agent.

    Args:
        session_id: the Haldir agent session the entries belong to.
        client: a :class:`~haldir.HaldirClient` (default: from the environment).
        record_io: include tool inputs and output previews in the entries.
    """

    def __init__(self, session_id: str, client: Optional[HaldirClient] = None, *, record_io: bool = True) -> None:
        super().__init__()
        if isinstance(client, AsyncHaldirClient):
            raise TypeError("HaldirCallbackHandler needs a HaldirClient (LangChain runs sync handlers in a thread for async runs)")
        self.session_id = session_id
        self.client = client if client is not None else HaldirClient()
        self.record_io = record_io
        self._runs: dict[UUID, tuple[str, float]] = {}

    def _log(self, tool: str, action: str, details: dict[str, Any]) -> None:
        try:
            self.client.log_action(self.session_id, tool=tool, action=action, details=details)
        except HaldirError as exc:
            log.warning("haldir: could not record %s of tool %s: %s", action, tool, exc)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        inputs: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        tool = (serialized or {}).get("name") or kwargs.get("name") or "unknown"
        self._runs[run_id] = (tool, time.monotonic())
        details: dict[str, Any] = {"run_id": str(run_id)}
        if self.record_io:
            details["input"] = _preview(inputs if inputs is not None else input_str)
        self._log(tool, "tool_start", details)

    def _finish(self, run_id: UUID, kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        tool, started = self._runs.pop(run_id, (kwargs.get("name") or "unknown", None))
        details: dict[str, Any] = {"run_id": str(run_id)}
        if started is not None:
            details["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        return tool, details

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        tool, details = self._finish(run_id, kwargs)
        if self.record_io:
            details["output"] = _preview(getattr(output, "content", output))
        self._log(tool, "tool_end", details)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        tool, details = self._finish(run_id, kwargs)
        details["error_type"] = type(error).__name__
        details["error"] = _preview(str(error))
        self._log(tool, "tool_error", details)
