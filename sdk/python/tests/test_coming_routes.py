"""Client methods for routes the server does not serve yet (vault, approvals,
webhooks, proxy), written against docs/API.md. Each test probes its route and
skips while the server answers 404, so it starts running when the route lands.
"""

from __future__ import annotations

import pytest

from conftest import skip_unless_route
from haldir import ApprovalRequiredError, ConflictError, HaldirError, NotFoundError, PermissionDeniedError


@pytest.fixture
def vault(server):
    skip_unless_route(server, "GET", "/v1/secrets", "The vault API")


@pytest.fixture
def approvals(server):
    skip_unless_route(server, "GET", "/v1/approvals/pending", "The approvals API")


def test_vault_secrets_lifecycle(vault, tenant_client):
    h = tenant_client
    stored = h.store_secret("stripe_key", "sk_live_123", scope_required="payments")
    assert stored["stored"] is True and stored["name"] == "stripe_key"
    assert h.store_secret("stripe_key", "sk_live_456", scope_required="payments")["version"] > stored.get("version", 0)

    allowed = h.create_session("payer", scopes=["payments"])["session_id"]
    denied = h.create_session("reader", scopes=["read"])["session_id"]
    assert h.get_secret("stripe_key", session_id=allowed) == {"name": "stripe_key", "value": "sk_live_456"}
    with pytest.raises(PermissionDeniedError):
        h.get_secret("stripe_key", session_id=denied)
    with pytest.raises(HaldirError):
        h.get_secret("stripe_key")  # a session is required

    assert h.list_secrets() == {"secrets": ["stripe_key"], "count": 1}
    assert h.delete_secret("stripe_key") == {"deleted": True, "name": "stripe_key"}
    with pytest.raises(NotFoundError):
        h.get_secret("stripe_key", session_id=allowed)


def test_approval_requests_and_decisions(approvals, tenant_client):
    h = tenant_client
    rule = h.create_approval_rule("tool_match", tools=["delete_repo"])
    assert rule["rule_id"] and rule["type"] == "tool_match"

    sid = h.create_session("ops-bot", scopes=["tool"])["session_id"]
    req = h.request_approval(sid, tool="delete_repo", action="delete", reason="cleanup", ttl=600)
    assert req["status"] == "pending" and req["request_id"]
    pending = h.list_pending_approvals(agent_id="ops-bot")
    assert req["request_id"] in [r["request_id"] for r in pending["requests"]]

    assert h.approve(req["request_id"], decided_by="alice", note="fine")["approved"] is True
    decided = h.wait_for_approval(req["request_id"], timeout=5, poll_interval=0.1)
    assert decided["status"] == "approved" and decided["decided_by"] == "alice"
    with pytest.raises(ConflictError):
        h.deny(req["request_id"], decided_by="bob")

    other = h.request_approval(sid, tool="delete_repo", action="delete")
    assert h.deny(other["request_id"], decided_by="bob")["denied"] is True
    assert h.get_approval(other["request_id"])["status"] == "denied"


def test_a_payment_over_a_spend_rule_needs_approval_once(approvals, tenant_client):
    h = tenant_client
    h.create_approval_rule("spend_over", threshold=100)
    sid = h.create_session("buyer", spend_limit=1000)["session_id"]
    assert h.authorize_payment(sid, 50)["authorized"]  # under the threshold

    with pytest.raises(ApprovalRequiredError) as info:
        h.authorize_payment(sid, 250, description="gpu hours")
    request_id = info.value.request_id
    assert request_id and info.value.code == "approval_required"
    h.approve(request_id, decided_by="finance")
    assert h.authorize_payment(sid, 250, description="gpu hours")["authorized"]
    with pytest.raises(ApprovalRequiredError):
        h.authorize_payment(sid, 250, description="gpu hours")
    assert h.get_session(sid)["spent"] == pytest.approx(300)


def test_webhooks(server, tenant_client):
    skip_unless_route(server, "GET", "/v1/webhooks", "The webhooks API")
    h = tenant_client
    hook = h.create_webhook("http://127.0.0.1:9/hook", name="alerts", events=["all"])
    assert hook["webhook_id"] and hook["secret"]
    listed = h.list_webhooks()["webhooks"]
    assert [w["webhook_id"] for w in listed] == [hook["webhook_id"]]
    assert "secret" not in listed[0]
    rotated = h.rotate_webhook_secret(hook["webhook_id"], grace_seconds=60)
    assert rotated["secret"] != hook["secret"]
    assert isinstance(h.list_webhook_deliveries(limit=5)["deliveries"], list)


def test_proxy_catalogue_and_policies(server, tenant_client):
    skip_unless_route(server, "GET", "/v1/proxy/tools", "The proxy API")
    h = tenant_client
    assert h.list_proxy_tools()["count"] == 0
    policy = h.create_proxy_policy("deny_list", tools=["rm"])
    assert policy["policy_id"] and policy["type"] == "deny_list"
    assert policy["policy_id"] in [p["policy_id"] for p in h.list_proxy_policies()["policies"]]
    sid = h.create_session("proxied", scopes=["tool"])["session_id"]
    with pytest.raises(HaldirError):
        h.call_tool("rm", {"path": "/"}, session_id=sid)
