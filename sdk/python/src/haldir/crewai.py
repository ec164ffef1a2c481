"""Haldir for CrewAI: govern any ``crewai.tools.BaseTool``.

::

    from haldir.crewai import govern_tools
    agent = Agent(role=..., tools=govern_tools([search_tool], session_id, costs={"search": 0.05}))

Requires the ``crewai`` extra (``pip install 'haldir[crewai]'``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Optional, Sequence, Union

try:
    from crewai.tools import BaseTool
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("haldir.crewai needs crewai: pip install 'haldir[crewai]'") from exc

from .async_client import AsyncHaldirClient
from .client import HaldirClient
from .governance import CostSpec, Governor

__all__ = ["GovernedTool", "govern_tool", "govern_tools"]

Client = Union[HaldirClient, AsyncHaldirClient, None]


class GovernedTool(BaseTool):
    """A CrewAI tool that runs another tool under Haldir governance.

    It keeps the wrapped tool's name, description and argument schema. Each
    call is scope-checked, spend-authorised (when the tool has a cost), run,
    and audited (see :class:`haldir.Governor`); a refusal raises a
    :class:`~haldir.PermissionDeniedError` subclass before the wrapped tool
    runs. CrewAI reports a tool's exception to the agent as the tool's
    result, so the agent learns why it was refused.

    Build one with :func:`govern_tool`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    wrapped: BaseTool
    scope: Optional[str] = None
    cost: Any = None

    _governor: Governor = PrivateAttr()

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        arguments = kwargs if not args else {"args": list(args), **kwargs}
        return self._governor.call(self.name, arguments, lambda: self.wrapped.run(*args, **kwargs), scope=self.scope, cost=self.cost)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        arguments = kwargs if not args else {"args": list(args), **kwargs}

        async def run() -> Any:
            if type(self.wrapped)._arun is not BaseTool._arun:
                return await self.wrapped.arun(*args, **kwargs)
            # A sync-only tool: run it off the event loop.
            return await asyncio.to_thread(self.wrapped.run, *args, **kwargs)

        return await self._governor.acall(self.name, arguments, run, scope=self.scope, cost=self.cost)


def govern_tool(
    tool: BaseTool,
    session_id: str,
    *,
    client: Client = None,
    scope: Optional[str] = None,
    cost: CostSpec = None,
    record_io: bool = True,
) -> GovernedTool:
    """Wrap a CrewAI tool so every call goes through Haldir under ``session_id``.

    Args:
        tool: any ``crewai.tools.BaseTool`` (``@tool`` functions, ``crewai_tools``, subclasses).
        session_id: the Haldir agent session to check and charge.
        client: a :class:`~haldir.HaldirClient` (default: from the environment).
        scope: the session scope required (default ``tool:<name>``, with
            characters a scope cannot hold, such as spaces, replaced by ``_``).
        cost: dollars per call (at least 0.01), or a function of the call's
            arguments returning them.
        record_io: put arguments and a result preview in the audit entry.
    """
    governed = GovernedTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_as_answer=tool.result_as_answer,
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
