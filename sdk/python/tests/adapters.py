"""One governed tool per framework, invoked the way that framework's agents invoke it.

Every adapter test runs the same scenarios against each entry of ADAPTERS, so
the frameworks are held to the same behaviour. A builder takes the tool body
(a function of one ``query: str``), the session, the Haldir client and the
governance options, and returns ``invoke(query) -> result``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any, Callable, Optional

import pytest

from haldir import HaldirClient

Invoke = Callable[[str], Any]
Body = Callable[[str], str]
TOOL = "lookup"


def _langchain(body: Body, session_id: str, client: HaldirClient, use_async: bool, **opts: Any) -> Invoke:
    from langchain_core.tools import tool

    from haldir.langchain import govern_tool

    @tool(TOOL)
    def lookup(query: str) -> str:
        """Look something up."""
        return body(query)

    governed = govern_tool(lookup, session_id, client=client, **opts)

    def invoke(query: str) -> Any:
        # What an agent's tool node sends: a ToolCall, answered by a ToolMessage.
        call = {"name": TOOL, "args": {"query": query}, "id": "call_1", "type": "tool_call"}
        message = asyncio.run(governed.ainvoke(call)) if use_async else governed.invoke(call)
        return message.content

    return invoke


def langchain_sync(body: Body, session_id: str, client: HaldirClient, **opts: Any) -> Invoke:
    return _langchain(body, session_id, client, False, **opts)


def langchain_async(body: Body, session_id: str, client: HaldirClient, **opts: Any) -> Invoke:
    return _langchain(body, session_id, client, True, **opts)


def crewai(body: Body, session_id: str, client: HaldirClient, **opts: Any) -> Invoke:
    from crewai.tools import tool

    from haldir.crewai import govern_tool

    @tool(TOOL)
    def lookup(query: str) -> str:
        """Look something up."""
        return body(query)

    governed = govern_tool(lookup, session_id, client=client, **opts)
    # CrewAI agents run a tool through its structured form (tool_usage.py).
    structured = governed.to_structured_tool()
    return lambda query: structured.invoke({"query": query})


def autogen(body: Body, session_id: str, client: HaldirClient, **opts: Any) -> Invoke:
    from autogen_core import CancellationToken
    from autogen_core.tools import FunctionTool

    from haldir.autogen import govern_tool

    def lookup(query: str) -> str:
        return body(query)

    governed = govern_tool(FunctionTool(lookup, description="Look something up.", name=TOOL), session_id, client=client, **opts)
    # AssistantAgent calls run_json with the model's arguments.
    return lambda query: asyncio.run(governed.run_json({"query": query}, CancellationToken()))


def _needs(module: str) -> Optional[str]:
    return None if importlib.util.find_spec(module) else f"{module} is not installed (run sdk/python/run_tests.sh)"


ADAPTERS = [
    pytest.param(langchain_sync, id="langchain", marks=[pytest.mark.langchain]),
    pytest.param(langchain_async, id="langchain-async", marks=[pytest.mark.langchain]),
    pytest.param(crewai, id="crewai", marks=[pytest.mark.crewai]),
    pytest.param(autogen, id="autogen", marks=[pytest.mark.autogen]),
]

REQUIRED_MODULE = {langchain_sync: "langchain_core", langchain_async: "langchain_core", crewai: "crewai", autogen: "autogen_core"}


def require(builder: Callable[..., Invoke]) -> None:
    """Skip when the builder's framework is missing (run_tests.sh installs them all)."""
    reason = _needs(REQUIRED_MODULE[builder])
    if reason:
        pytest.skip(reason)
