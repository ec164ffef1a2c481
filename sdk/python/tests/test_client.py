"""HaldirClient against a real Haldir server: the wire contract, typed errors,
idempotency keys and retries."""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import run_server
from haldir import (
    APIConnectionError,
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    HaldirClient,
    HaldirError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    SessionInvalidError,
    ValidationError,
)


class Recorder:
    """httpx event hook keeping the headers of every request sent (real traffic, nothing mocked)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def client(self) -> httpx.Client:
        return httpx.Client(event_hooks={"request": [self]})


# Keys and bootstrap


def test_first_key_of_a_fresh_install_needs_no_auth(server):
    with tempfile.TemporaryDirectory() as tmp, run_server(server.binary, Path(tmp)) as fresh:
        anonymous = HaldirClient(api_key="", base_url=fresh.base_url)
        first = anonymous.create_key(name="bootstrap")
        assert first["key"].startswith("hld_") and first["scopes"] == ["*"]
        with pytest.raises(AuthenticationError) as info:
            anonymous.create_key(name="second")
        assert first["key"] not in str(info.value)
        with HaldirClient(api_key=first["key"], base_url=fresh.base_url) as h:
            assert h.list_keys()["count"] == 1


def test_keys_can_be_created_listed_and_revoked(server, client):
    made = client.create_key(name="reader", scopes=["audit:read"])
    assert made["scopes"] == ["audit:read"]
    assert made["prefix"] in [k["prefix"] for k in client.list_keys()["keys"]]

    reader = HaldirClient(api_key=made["key"], base_url=server.base_url)
    reader.get_audit_trail(limit=1)
    with pytest.raises(PermissionDeniedError) as info:
        reader.create_session("agent")
    assert info.value.code == "insufficient_scope"

    assert client.revoke_key(made["prefix"])["revoked"] is True
    with pytest.raises(AuthenticationError):
        reader.get_audit_trail(limit=1)


def test_the_api_key_never_appears_in_errors_or_repr(server):
    key = "hld_" + "S3cr3t" * 8
    h = HaldirClient(api_key=key, base_url=server.base_url)
    assert key not in repr(h)
    with pytest.raises(AuthenticationError) as info:
        h.get_session("ses_x")
    for text in (str(info.value), repr(info.value), str(info.value.body)):
        assert key not in text
    assert info.value.status == 401 and info.value.request_id


def test_configuration_from_the_environment(server, api_key, monkeypatch):
    monkeypatch.setenv("HALDIR_API_KEY", api_key)
    monkeypatch.setenv("HALDIR_BASE_URL", server.base_url + "/")
    with HaldirClient() as h:
        assert h.base_url == server.base_url
        assert h.get_usage()["action_count"] >= 0
    monkeypatch.delenv("HALDIR_BASE_URL")
    assert HaldirClient().base_url == "http://localhost:8000"


# Sessions


def test_session_lifecycle(client):
    created = client.create_session("research-bot", scopes=["read", "write", "spend:50"], ttl=600)
    sid = created["session_id"]
    assert created["agent_id"] == "research-bot"
    assert created["spend_limit"] == 50 and created["ttl"] == 600

    info = client.get_session(sid)
    assert info["is_valid"] and info["spent"] == 0 and info["remaining_budget"] == 50

    assert client.check_permission(sid, "write:files")["allowed"]  # a parent grants its children
    assert not client.check_permission(sid, "delete")["allowed"]

    assert client.revoke_session(sid) == {"revoked": True, "session_id": sid}
    assert client.revoke_session(sid)["revoked"]  # repeating is harmless
    assert not client.get_session(sid)["is_valid"]
    assert not client.check_permission(sid, "read")["allowed"]


def test_default_session_and_unknown_sessions(client):
    created = client.create_session("plain")
    assert created["scopes"] == ["read", "browse"] and created["ttl"] == 3600 and created["spend_limit"] == 0
    with pytest.raises(NotFoundError) as info:
        client.get_session("ses_does_not_exist")
    assert info.value.code == "not_found" and info.value.status == 404
    assert client.check_permission("ses_does_not_exist", "read")["allowed"] is False


def test_validation_errors_name_the_field(client):
    with pytest.raises(ValidationError) as info:
        client.create_session("x" * 200)
    assert info.value.field == "agent_id" and info.value.code == "invalid_request"
    with pytest.raises(ValidationError) as info:
        client.create_session("bot", ttl=0)
    assert info.value.field == "ttl"


# Payments


def test_payments_against_the_cap(client):
    sid = client.create_session("buyer", scopes=["spend:10"])["session_id"]
    auth = client.authorize_payment(sid, 2.50, description="api credits")
    assert auth["authorized"] and auth["authorization_id"]
    assert auth["remaining_budget"] == pytest.approx(7.50)
    assert client.authorize_payment(sid, Decimal("2.50"))["remaining_budget"] == pytest.approx(5)
    assert client.authorize_payment(sid, "0.01")["remaining_budget"] == pytest.approx(4.99)

    with pytest.raises(BudgetExceededError) as info:
        client.authorize_payment(sid, 5)
    assert info.value.code == "budget_exceeded" and info.value.status == 403
    assert info.value.remaining_budget == pytest.approx(4.99)
    assert info.value.body["authorized"] is False
    assert client.get_session(sid)["spent"] == pytest.approx(5.01)


def test_payment_refusals(client):
    uncapped = client.create_session("no-cap")["session_id"]
    with pytest.raises(BudgetExceededError):
        client.authorize_payment(uncapped, 1)

    capped = client.create_session("capped", spend_limit=5)["session_id"]
    with pytest.raises(ValidationError) as info:
        client.authorize_payment(capped, -1)
    assert info.value.field == "amount"
    with pytest.raises(NotFoundError):
        client.authorize_payment("ses_unknown", 1)

    client.revoke_session(capped)
    with pytest.raises(SessionInvalidError) as info:
        client.authorize_payment(capped, 1)
    assert isinstance(info.value, PermissionDeniedError)


# Audit


def test_audit_trail_log_query_spend_and_verify(client):
    sid = client.create_session("auditor", scopes=["read"], spend_limit=5)["session_id"]
    logged = client.log_action(sid, tool="stripe", action="charge", cost_usd=1.25, details={"invoice": "inv_1"})
    assert logged["logged"] and logged["entry_id"] and not logged["flagged"]
    for i in range(4):
        client.log_action(sid, "search", f"query-{i}")

    page = client.get_audit_trail(session_id=sid, tool="stripe")
    assert page["count"] == 1
    [entry] = page["entries"]
    assert entry["action"] == "charge" and entry["cost_usd"] == 1.25 and entry["details"] == {"invoice": "inv_1"}
    assert len(entry["entry_hash"]) == 64

    # The trail is the ledger: it holds the session's creation too.
    everything = list(client.iter_audit_trail(session_id=sid, page_size=2))
    assert [e["action"] for e in everything if e["type"] == "audit.logged"] == ["query-3", "query-2", "query-1", "query-0", "charge"]
    assert [e["seq"] for e in everything] == sorted((e["seq"] for e in everything), reverse=True)

    spend = client.get_spend(session_id=sid)
    assert spend["total_usd"] == pytest.approx(1.25) and spend["by_tool"]["stripe"] == pytest.approx(1.25)
    assert client.get_session(sid)["spent"] == pytest.approx(1.25)  # cost_usd counts toward the cap

    assert client.verify_audit()["verified"] is True
    export = client.export_audit(session_id=sid)
    assert export.strip().splitlines()[-1].startswith('{"manifest"')


def test_actions_on_a_revoked_session_are_flagged(client):
    sid = client.create_session("late")["session_id"]
    client.revoke_session(sid)
    logged = client.log_action(sid, tool="shell", action="rm")
    assert logged["flagged"] and "revoked" in logged["flag_reason"]
    assert [e["entry_id"] for e in client.iter_audit_trail(session_id=sid, flagged=True) if e["type"] == "audit.logged"] == [logged["entry_id"]]


def test_audit_query_validation(client):
    with pytest.raises(ValidationError) as info:
        client.get_audit_trail(limit=5000)
    assert info.value.field == "limit"


# Idempotency


def test_an_explicit_idempotency_key_replays_the_original(client):
    sid = client.create_session("idem", spend_limit=10)["session_id"]
    first = client.authorize_payment(sid, 3, idempotency_key="order-42")
    again = client.authorize_payment(sid, 3, idempotency_key="order-42")
    assert again == first
    assert client.get_session(sid)["spent"] == pytest.approx(3)

    with pytest.raises(ConflictError) as info:
        client.authorize_payment(sid, 4, idempotency_key="order-42")
    assert info.value.code == "idempotency_key_reused" and info.value.status == 422


def test_every_write_gets_its_own_idempotency_key(server, api_key):
    recorder = Recorder()
    with HaldirClient(api_key=api_key, base_url=server.base_url, http_client=recorder.client()) as h:
        sid = h.create_session("keys", spend_limit=5)["session_id"]
        h.authorize_payment(sid, 1)
        h.authorize_payment(sid, 1)
        h.log_action(sid, action="x")
        h.check_permission(sid, "read")
        h.get_session(sid)
    by_path = [(r.method, r.url.path, r.headers.get("idempotency-key")) for r in recorder.requests]
    write_keys = [key for method, path, key in by_path if method == "POST" and not path.endswith("/check")]
    assert len(write_keys) == 4 and all(write_keys) and len(set(write_keys)) == 4
    assert all(key is None for method, path, key in by_path if method == "GET" or path.endswith("/check"))


# Retries


def test_connection_failures_are_retried_with_the_same_idempotency_key():
    recorder = Recorder()
    with socket_that_refuses() as url:
        h = HaldirClient(api_key="hld_x", base_url=url, retry=RetryPolicy(max_retries=2, backoff_base=0.01), http_client=recorder.client())
        started = time.monotonic()
        with pytest.raises(APIConnectionError) as info:
            h.authorize_payment("ses_1", 1)
    assert time.monotonic() - started < 5
    assert "after 3 attempt(s)" in str(info.value) and info.value.status is None
    keys = [r.headers["idempotency-key"] for r in recorder.requests]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_rate_limits_raise_with_retry_after(server, client):
    limited_key = client.create_key(name="slow", rate_limit=2)["key"]
    recorder = Recorder()
    # Retry-After is up to a minute here, over max_retry_after: no waiting, no retry.
    policy = RetryPolicy(max_retries=3, max_retry_after=0.5)
    with HaldirClient(api_key=limited_key, base_url=server.base_url, retry=policy, http_client=recorder.client()) as h:
        h.get_usage()
        h.get_usage()
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as info:
            h.get_usage()
    assert time.monotonic() - started < 2
    assert info.value.status == 429 and info.value.code == "rate_limited"
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    assert len(recorder.requests) == 3


def test_retry_policy_delays_are_bounded_and_jittered():
    policy = RetryPolicy(max_retries=5, backoff_base=1, backoff_max=4, max_retry_after=10)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 4), (5, 4)]:
        delays = {policy.delay(attempt, None) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1
    assert policy.delay(6, None) is None
    assert 3 <= policy.delay(1, 3) <= 4
    assert policy.delay(1, 11) is None
    assert RetryPolicy(max_retries=0).delay(1, None) is None


# Helpers


class socket_that_refuses:
    """A loopback URL where nothing listens."""

    def __enter__(self) -> str:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        pass


def test_errors_are_haldir_errors():
    for cls in (APIConnectionError, AuthenticationError, BudgetExceededError, ConflictError, NotFoundError, RateLimitedError, ValidationError):
        assert issubclass(cls, HaldirError)
    assert issubclass(BudgetExceededError, PermissionDeniedError)
    assert issubclass(SessionInvalidError, PermissionDeniedError)
