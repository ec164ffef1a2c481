"""Haldir for AutoGen (``autogen-agentchat`` / ``autogen_core``): govern a tool or a function.

::

    from haldir.autogen import govern_tool
    agent = AssistantAgent("analyst", model_client=..., tools=[govern_tool(get_stock_price, session_id, cost=0.02)])

Requires the ``autogen`` extra (``pip install 'haldir[autogen]'``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Union

try:
    from autogen_core import CancellationToken
    from autogen_core.tools import BaseTool, FunctionTool
    from pydantic import BaseModel
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("haldir.autogen needs autogen-core: pip install 'haldir[autogen]'") from exc

from .async_client import AsyncHaldirClient
from .client import HaldirClient
from .governance import CostSpec, Governor

__all__ = ["GovernedTool", "govern_tool", "govern_tools"]

Client = Union[HaldirClient, AsyncHaldirClient, None]
ToolOrFunction = Union[BaseTool[Any, Any], Callable[..., Any]]


class GovernedTool(BaseTool[BaseModel, Any]):
    """An AutoGen tool that runs another tool under Haldir governance.

    Same name, description, argument schema and return type as the wrapped
    tool, so a model sees no difference. Each ``run`` is scope-checked,
    spend-authorised (when the tool has a cost), run and audited (see
    :class:`haldir.Governor`); a refusal raises a
    :class:`~haldir.PermissionDeniedError` subclass before the wrapped tool
    runs. ``AssistantAgent`` reports a tool's exception to the model as an
    error result, so the model learns why it was refused.

    Works with a :class:`~haldir.HaldirClient` (its calls run in a thread) or
    an :class:`~haldir.AsyncHaldirClient`. Build one with :func:`govern_tool`.
    """

    def __init__(self, tool: BaseTool[Any, Any], governor: Governor, *, scope: Optional[str] = None, cost: CostSpec = None) -> None:
        super().__init__(
            args_type=tool.args_type(),
            return_type=tool.return_type(),
            name=tool.name,
            description=tool.description,
            strict=getattr(tool, "_strict", False),
        )
        self.wrapped = tool
        self.governor = governor
        self.scope = scope
        self.cost = cost

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        return await self.governor.acall(
            self.name,
            args.model_dump(),
            lambda: self.wrapped.run(args, cancellation_token),
            scope=self.scope,
            cost=self.cost,
        )

    def return_value_as_string(self, value: Any) -> str:
        return self.wrapped.return_value_as_string(value)


def govern_tool(
    tool: ToolOrFunction,
    session_id: str,
    *,
    client: Client = None,
    scope: Optional[str] = None,
    cost: CostSpec = None,
    description: Optional[str] = None,
    record_io: bool = True,
) -> GovernedTool:
    """Wrap an AutoGen tool, or a plain (sync or async) function, so every
    call goes through Haldir under ``session_id``.

    Args:
        tool: an ``autogen_core.tools.BaseTool`` (e.g. ``FunctionTool``) or a
            typed function, which becomes a ``FunctionTool`` first.
        session_id: the Haldir agent session to check and charge.
        client: a :class:`~haldir.HaldirClient` or :class:`~haldir.AsyncHaldirClient`
            (default: ``HaldirClient()`` from the environment).
        scope: the session scope required (default ``tool:<name>``).
        cost: dollars per call (at least 0.01), or a function of the call's
            arguments returning them.
        description: for a function: the description the model sees
            (default: its docstring).
        record_io: put arguments and a result preview in the audit entry.
    """
    if not isinstance(tool, BaseTool):
        if not callable(tool):
            raise TypeError(f"govern_tool expects an AutoGen BaseTool or a function, not {type(tool).__name__}")
        tool = FunctionTool(tool, description=description or (tool.__doc__ or "").strip() or tool.__name__)
    return GovernedTool(tool, Governor(session_id, client, record_io=record_io), scope=scope, cost=cost)


def govern_tools(
    tools: Sequence[ToolOrFunction],
    session_id: str,
    *,
    client: Client = None,
    scopes: Optional[Mapping[str, str]] = None,
    costs: Optional[Mapping[str, CostSpec]] = None,
    record_io: bool = True,
) -> list[GovernedTool]:
    """:func:`govern_tool` for a list; ``scopes`` and ``costs`` are keyed by tool name."""
    client = client if client is not None else HaldirClient()
    governed = []
    for t in tools:
        name = t.name if isinstance(t, BaseTool) else getattr(t, "__name__", "")
        governed.append(govern_tool(t, session_id, client=client, scope=(scopes or {}).get(name), cost=(costs or {}).get(name), record_io=record_io))
    return governed
