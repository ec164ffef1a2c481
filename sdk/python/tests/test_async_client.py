"""AsyncHaldirClient: the same contract as the sync client, awaited."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from haldir import AsyncHaldirClient, BudgetExceededError, ConflictError, NotFoundError, RateLimitedError, RetryPolicy


def run(coro):
    return asyncio.run(coro)


def test_async_session_payment_audit_flow(server, api_key):
    async def scenario():
        async with AsyncHaldirClient(api_key=api_key, base_url=server.base_url) as h:
            sid = (await h.create_session("async-bot", scopes=["read", "spend:2"]))["session_id"]
            assert (await h.check_permission(sid, "read"))["allowed"]
            assert (await h.authorize_payment(sid, 1.5))["remaining_budget"] == pytest.approx(0.5)
            with pytest.raises(BudgetExceededError):
                await h.authorize_payment(sid, 1)
            await h.log_action(sid, tool="search", action="query", details={"q": "x"})
            entries = [e async for e in h.iter_audit_trail(session_id=sid, page_size=1)]
            assert {e["type"] for e in entries} >= {"session.created", "payment.authorized", "payment.denied", "audit.logged"}
            assert (await h.get_spend(session_id=sid))["total_usd"] == pytest.approx(1.5)
            await h.revoke_session(sid)
            assert not (await h.get_session(sid))["is_valid"]
            with pytest.raises(NotFoundError):
                await h.get_session("ses_missing")
            assert (await h.verify_audit())["verified"]

    run(scenario())


def test_async_idempotency(server, api_key):
    async def scenario():
        seen: list[httpx.Request] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(request)

        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as http:
            h = AsyncHaldirClient(api_key=api_key, base_url=server.base_url, http_client=http)
            sid = (await h.create_session("idem", spend_limit=5))["session_id"]
            first = await h.authorize_payment(sid, 1, idempotency_key="k-1")
            assert await h.authorize_payment(sid, 1, idempotency_key="k-1") == first
            with pytest.raises(ConflictError):
                await h.authorize_payment(sid, 2, idempotency_key="k-1")
            # Concurrent distinct calls each get their own automatic key.
            await asyncio.gather(*(h.log_action(sid, action=f"a{i}") for i in range(5)))
        keys = [r.headers.get("idempotency-key") for r in seen if r.url.path == "/v1/audit"]
        assert len(keys) == 5 and len(set(keys)) == 5

    run(scenario())


def test_async_rate_limit(server, api_key):
    async def scenario():
        async with AsyncHaldirClient(api_key=api_key, base_url=server.base_url) as admin:
            key = (await admin.create_key(name="async-slow", rate_limit=1))["key"]
        async with AsyncHaldirClient(api_key=key, base_url=server.base_url, retry=RetryPolicy(max_retries=2, max_retry_after=0.2)) as h:
            await h.get_usage()
            with pytest.raises(RateLimitedError) as info:
                await h.get_usage()
            assert info.value.retry_after and info.value.retry_after >= 1

    run(scenario())
