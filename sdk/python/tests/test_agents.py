"""Governed tools inside real agent loops, and LangChain's callback handler.

There is no LLM here (no internet), so the AutoGen agent is driven by
autogen-ext's ReplayChatCompletionClient, AutoGen's own scripted model for
tests: the agent, its tool execution and its error handling are the real ones.
"""

from __future__ import annotations

import asyncio

import pytest

from haldir import HaldirClient


def _replayed_tool_call(arguments: str):
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, ModelInfo, RequestUsage
    from autogen_ext.models.replay import ReplayChatCompletionClient

    call = CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id="call_1", name="get_price", arguments=arguments)],
        usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
        cached=False,
    )
    info = ModelInfo(vision=False, function_calling=True, json_output=False, family="unknown", structured_output=False)
    return ReplayChatCompletionClient([call, "done"], model_info=info)


def _run_agent(tool, arguments: str):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import ToolCallExecutionEvent

    agent = AssistantAgent("analyst", model_client=_replayed_tool_call(arguments), tools=[tool])
    result = asyncio.run(agent.run(task="What does ACME cost?"))
    [event] = [m for m in result.messages if isinstance(m, ToolCallExecutionEvent)]
    [outcome] = event.content
    return outcome


@pytest.mark.autogen
def test_autogen_assistant_agent_runs_a_governed_function(client: HaldirClient, new_session, counter):
    pytest.importorskip("autogen_ext.models.replay")
    from haldir.autogen import govern_tool

    sid = new_session(scopes=["tool:get_price"], spend_limit=1)

    def get_price(ticker: str) -> float:
        """Latest price of a stock."""
        counter.hit()
        return 42.0

    outcome = _run_agent(govern_tool(get_price, sid, client=client, cost=0.10), '{"ticker": "ACME"}')
    assert not outcome.is_error and outcome.content == "42.0"
    assert counter.calls == 1
    assert client.get_session(sid)["spent"] == pytest.approx(0.10)


@pytest.mark.autogen
def test_autogen_assistant_agent_is_told_when_haldir_refuses(client: HaldirClient, new_session, counter):
    pytest.importorskip("autogen_ext.models.replay")
    from haldir.autogen import govern_tool

    sid = new_session(scopes=["read"])

    def get_price(ticker: str) -> float:
        """Latest price of a stock."""
        counter.hit()
        return 42.0

    outcome = _run_agent(govern_tool(get_price, sid, client=client), '{"ticker": "ACME"}')
    assert outcome.is_error and "does not grant scope 'tool:get_price'" in outcome.content
    assert counter.calls == 0


@pytest.mark.langchain
def test_langchain_callback_handler_records_tool_runs(client: HaldirClient, new_session):
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    from haldir.langchain import HaldirCallbackHandler

    sid = new_session(scopes=["read"])
    handler = HaldirCallbackHandler(sid, client)

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two numbers."""
        return a * b

    @tool
    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(reason)

    assert multiply.invoke({"a": 6, "b": 7}, config={"callbacks": [handler]}) == 42
    with pytest.raises(RuntimeError):
        explode.invoke({"reason": "kaboom"}, config={"callbacks": [handler]})
    assert asyncio.run(multiply.ainvoke({"a": 2, "b": 2}, config={"callbacks": [handler]})) == 4

    entries = [e for e in client.iter_audit_trail(session_id=sid) if e["type"] == "audit.logged"]
    actions = [(e["tool"], e["action"]) for e in reversed(entries)]
    assert actions == [
        ("multiply", "tool_start"),
        ("multiply", "tool_end"),
        ("explode", "tool_start"),
        ("explode", "tool_error"),
        ("multiply", "tool_start"),
        ("multiply", "tool_end"),
    ]
    first_end = next(e for e in reversed(entries) if e["action"] == "tool_end")
    assert first_end["details"]["output"] == 42 and first_end["details"]["duration_ms"] >= 0
    error = next(e for e in entries if e["action"] == "tool_error")
    assert error["details"]["error"] == "kaboom"


@pytest.mark.langchain
def test_langchain_callback_handler_never_breaks_the_agent(server, new_session):
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    from haldir.langchain import HaldirCallbackHandler

    unreachable = HaldirClient(api_key="hld_x", base_url="http://127.0.0.1:9", max_retries=0)
    handler = HaldirCallbackHandler("ses_x", unreachable)

    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    assert ping.invoke({}, config={"callbacks": [handler]}) == "pong"
