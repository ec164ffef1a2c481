"""The framework adapters against a real Haldir server, with the real frameworks.

Each scenario runs for LangChain (sync and async), CrewAI and AutoGen, with
the tool invoked the way that framework's agents invoke it. A counter proves
whether the tool body really ran.
"""

from __future__ import annotations

import pytest

from adapters import ADAPTERS, TOOL, require
from conftest import skip_unless_route
from haldir import (
    ApprovalRequiredError,
    BudgetExceededError,
    HaldirClient,
    PermissionDeniedError,
    SessionInvalidError,
)

pytestmark = pytest.mark.parametrize("build", ADAPTERS)


def _entries(client: HaldirClient, session_id: str, action: str) -> list:
    return [e for e in client.iter_audit_trail(session_id=session_id, tool=TOOL) if e["action"] == action]


def test_allowed_call_runs_and_is_audited(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["tool:lookup"])

    def body(query: str) -> str:
        counter.hit()
        return f"found {query}"

    invoke = build(body, session_id, client)
    assert "found mcp" in str(invoke("mcp"))
    assert counter.calls == 1

    [entry] = _entries(client, session_id, "tool_call")
    assert entry["details"]["arguments"] == {"query": "mcp"}
    assert "found mcp" in str(entry["details"]["result"])
    assert entry["details"]["duration_ms"] >= 0
    assert not entry["flagged"]


def test_denied_scope_never_runs_the_tool(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["read", "tool:other"])
    invoke = build(lambda q: counter.hit() or "ran", session_id, client)

    with pytest.raises(PermissionDeniedError) as info:
        invoke("anything")
    assert info.value.code == "scope_denied"
    assert "tool:lookup" in str(info.value)
    assert counter.calls == 0
    assert _entries(client, session_id, "tool_call") == []
    [denied] = _entries(client, session_id, "tool_denied")
    assert denied["details"]["scope"] == "tool:lookup"


def test_custom_scope(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["browse"])
    invoke = build(lambda q: counter.hit() or "ok", session_id, client, scope="browse:web")
    invoke("x")
    assert counter.calls == 1


def test_budget_exhaustion_stops_the_tool(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["tool"], spend_limit=1.00)
    invoke = build(lambda q: counter.hit() or "paid", session_id, client, cost=0.40)

    invoke("one")
    invoke("two")
    with pytest.raises(BudgetExceededError) as info:
        invoke("three")
    assert counter.calls == 2
    assert info.value.remaining_budget == pytest.approx(0.20)

    # The cost is counted once per call (by the authorisation), not twice.
    session = client.get_session(session_id)
    assert session["spent"] == pytest.approx(0.80)
    entries = _entries(client, session_id, "tool_call")
    assert [e["details"]["cost_usd"] for e in entries] == [0.40, 0.40]
    assert all(e["details"]["authorization_id"] for e in entries)


def test_session_without_cap_cannot_run_a_paid_tool(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["tool"])
    invoke = build(lambda q: counter.hit() or "paid", session_id, client, cost=0.05)
    with pytest.raises(BudgetExceededError):
        invoke("x")
    assert counter.calls == 0


def test_cost_can_depend_on_arguments(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["tool"], spend_limit=5)
    invoke = build(lambda q: counter.hit() or "ok", session_id, client, cost=lambda args: len(args["query"]))
    invoke("abc")  # $3
    with pytest.raises(BudgetExceededError):
        invoke("abc")  # another $3 does not fit the $2 left
    assert counter.calls == 1
    assert client.get_session(session_id)["spent"] == pytest.approx(3)


def test_revocation_stops_the_next_call(build, client, new_session, counter):
    require(build)
    session_id = new_session(scopes=["tool"])
    invoke = build(lambda q: counter.hit() or "ok", session_id, client)

    invoke("before")
    client.revoke_session(session_id)
    with pytest.raises(SessionInvalidError) as info:
        invoke("after")
    assert "revoked" in str(info.value)
    assert counter.calls == 1


def test_tool_error_is_audited_and_raised(build, client, new_session):
    require(build)
    session_id = new_session(scopes=["tool"])

    def body(query: str) -> str:
        raise ValueError(f"upstream refused {query}")

    invoke = build(body, session_id, client)
    with pytest.raises(Exception, match="upstream refused boom"):
        invoke("boom")
    [entry] = _entries(client, session_id, "tool_error")
    assert entry["details"]["error_type"] == "ValueError"
    assert "upstream refused boom" in entry["details"]["error"]


def test_record_io_off_keeps_arguments_out_of_the_trail(build, client, new_session):
    require(build)
    session_id = new_session(scopes=["tool"])
    invoke = build(lambda q: "secret result", session_id, client, record_io=False)
    invoke("secret argument")
    [entry] = _entries(client, session_id, "tool_call")
    assert "arguments" not in entry["details"] and "result" not in entry["details"]


def test_approval_required_then_approved_runs_once(build, server, tenant_client, counter):
    """Spend over a rule's threshold needs a human: the tool waits for approval,
    runs once when approved, and needs approval again for the next call."""
    require(build)
    client = tenant_client
    skip_unless_route(server, "GET", "/v1/approvals/pending", "The approvals API")
    client.create_approval_rule("spend_over", threshold=5)
    session_id = client.create_session("shopper", scopes=["tool"], spend_limit=100)["session_id"]
    invoke = build(lambda q: counter.hit() or "bought", session_id, client, cost=10)

    with pytest.raises(ApprovalRequiredError) as info:
        invoke("laptop")
    request_id = info.value.request_id
    assert request_id, "approval_required must carry the approval request id"
    assert counter.calls == 0
    assert client.get_approval(request_id)["status"] == "pending"

    client.approve(request_id, decided_by="test-suite", note="ok")
    assert client.get_approval(request_id)["status"] == "approved"
    assert "bought" in str(invoke("laptop"))
    assert counter.calls == 1

    with pytest.raises(ApprovalRequiredError) as again:
        invoke("laptop")
    assert again.value.request_id and again.value.request_id != request_id
    assert counter.calls == 1


def test_denied_approval_never_runs_the_tool(build, server, tenant_client, counter):
    require(build)
    client = tenant_client
    skip_unless_route(server, "GET", "/v1/approvals/pending", "The approvals API")
    client.create_approval_rule("spend_over", threshold=5)
    session_id = client.create_session("shopper", scopes=["tool"], spend_limit=100)["session_id"]
    invoke = build(lambda q: counter.hit() or "bought", session_id, client, cost=10)

    with pytest.raises(ApprovalRequiredError) as info:
        invoke("yacht")
    client.deny(info.value.request_id, decided_by="test-suite", note="no")
    with pytest.raises(PermissionDeniedError):
        invoke("yacht")
    assert counter.calls == 0
