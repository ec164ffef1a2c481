"""Governor and @govern without any framework, sync and async."""

from __future__ import annotations

import asyncio

import pytest

from haldir import (
    AsyncHaldirClient,
    BudgetExceededError,
    Governor,
    PermissionDeniedError,
    SessionInvalidError,
    ValidationError,
    default_scope,
    govern,
)


def test_default_scope_is_per_tool_and_scope_safe():
    assert default_scope("search") == "tool:search"
    assert default_scope("Search the internet!") == "tool:Search_the_internet_"


def test_governed_function_sync(client, new_session, counter):
    sid = new_session(scopes=["tool:add"], spend_limit=1)

    @govern(sid, client=client, cost=0.25)
    def add(a: int, b: int) -> int:
        counter.hit()
        return a + b

    assert add(2, b=3) == 5
    assert add.__name__ == "add"
    [entry] = [e for e in client.iter_audit_trail(session_id=sid, tool="add") if e["action"] == "tool_call"]
    assert entry["details"]["arguments"] == {"a": 2, "b": 3}
    assert entry["details"]["result"] == 5
    assert entry["details"]["cost_usd"] == 0.25
    assert client.get_session(sid)["spent"] == pytest.approx(0.25)


def test_governed_function_async_with_sync_client(client, new_session, counter):
    sid = new_session(scopes=["tool"])

    @govern(sid, client=client, name="fetch")
    async def fetch(url: str) -> str:
        counter.hit()
        return "page"

    assert asyncio.run(fetch("https://example.invalid")) == "page"
    client.revoke_session(sid)
    with pytest.raises(SessionInvalidError):
        asyncio.run(fetch("https://example.invalid"))
    assert counter.calls == 1


def test_governor_with_async_client(server, api_key, new_session, counter):
    sid = new_session(scopes=["tool:echo"], spend_limit=0.5)

    async def scenario() -> None:
        async with AsyncHaldirClient(api_key=api_key, base_url=server.base_url) as h:
            gov = Governor(sid, h)

            async def echo() -> str:
                counter.hit()
                return "echo"

            assert await gov.acall("echo", {}, echo, cost=0.3) == "echo"
            with pytest.raises(BudgetExceededError):
                await gov.acall("echo", {}, echo, cost=0.3)
            with pytest.raises(PermissionDeniedError) as info:
                await gov.acall("other", {}, echo)
            assert info.value.code == "scope_denied"
            with pytest.raises(TypeError, match="AsyncHaldirClient"):
                gov.call("echo", {}, lambda: "sync")

    asyncio.run(scenario())
    assert counter.calls == 1


def test_unknown_session_is_refused(client, counter):
    gov = Governor("ses_never_existed", client)
    with pytest.raises(SessionInvalidError, match="does not exist"):
        gov.call("tool", {}, counter.hit)
    assert counter.calls == 0


@pytest.mark.parametrize("cost", [0.001, -1, "lots", float("nan")])
def test_invalid_costs_are_refused_before_anything_runs(client, new_session, counter, cost):
    gov = Governor(new_session(scopes=["tool"], spend_limit=10), client)
    with pytest.raises(ValidationError) as info:
        gov.call("t", {}, counter.hit, cost=cost)
    assert info.value.field == "cost"
    assert counter.calls == 0


def test_zero_cost_is_free(client, new_session, counter):
    sid = new_session(scopes=["tool"])  # no cap: any authorisation would fail
    Governor(sid, client).call("t", {}, counter.hit, cost=0)
    assert counter.calls == 1


def test_unserialisable_results_are_previewed(client, new_session):
    sid = new_session(scopes=["tool"])
    Governor(sid, client).call("obj", {"when": object()}, lambda: {"big": "x" * 5000})
    [entry] = [e for e in client.iter_audit_trail(session_id=sid, tool="obj") if e["action"] == "tool_call"]
    assert entry["details"]["arguments"]["when"].startswith("<object object")
    assert isinstance(entry["details"]["result"], str) and len(entry["details"]["result"]) <= 1001


def test_a_governor_needs_a_session():
    with pytest.raises(ValueError):
        Governor("", object())  # type: ignore[arg-type]
