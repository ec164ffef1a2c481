"""The session consistency token: every client echoes the highest
Haldir-Position it has seen, against a scripted HTTP server (to choose the
positions) and against the real one."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Optional

import httpx
import pytest

from haldir import AsyncHaldirClient, ConflictError, HaldirClient

MALFORMED = ["abc", "-9", "+9", "9 9", "9.0", "0x10", "1_000", "²", "9223372036854775808", "99999999999999999999"]


class Script:
    """What the scripted server answers next, and the Haldir-Position each request sent."""

    def __init__(self) -> None:
        self.position: Optional[str] = None
        self.status = 200
        self.sent: list[Optional[str]] = []


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.sent.append(self.headers.get("Haldir-Position"))
            body = b'{"error":"scripted","code":"conflict"}'
            self.send_response(script.status)
            if script.position is not None:
                self.send_header("Haldir-Position", script.position)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def steps():
    """(answer position, answer status, the position the request must send)."""
    yield "7", 200, None
    yield "5", 200, "7"
    for bad in MALFORMED:
        yield bad, 200, "7"
    yield None, 200, "7"
    yield "9223372036854775807", 409, "7"  # an error answer carries a position too
    yield None, 200, "9223372036854775807"


def test_the_client_echoes_the_highest_position_seen(scripted):
    url, script = scripted
    with HaldirClient(api_key="hld_x", base_url=url, max_retries=0) as h:
        assert h.position == 0
        for answer, status, want in steps():
            script.position, script.status = answer, status
            if status < 400:
                h.get_usage()
            else:
                with pytest.raises(ConflictError):
                    h.get_usage()
            assert script.sent[-1] == want, f"answered {answer!r} before"
        assert h.position == 2**63 - 1


def test_the_async_client_echoes_the_highest_position_seen(scripted):
    url, script = scripted

    async def scenario() -> None:
        async with AsyncHaldirClient(api_key="hld_x", base_url=url, max_retries=0) as h:
            assert h.position == 0
            for answer, status, want in steps():
                script.position, script.status = answer, status
                if status < 400:
                    await h.get_usage()
                else:
                    with pytest.raises(ConflictError):
                        await h.get_usage()
                assert script.sent[-1] == want, f"answered {answer!r} before"
            assert h.position == 2**63 - 1

    asyncio.run(scenario())


def test_a_position_can_seed_another_client(scripted):
    url, script = scripted
    with HaldirClient(api_key="hld_x", base_url=url, position=42) as h:
        h.get_usage()
        assert script.sent[-1] == "42" and h.position == 42
    for bad in (-1, 2**63, "7", 1.5, True):
        with pytest.raises(ValueError):
            HaldirClient(api_key="hld_x", base_url=url, position=bad)


def test_the_real_server_names_positions_that_the_client_echoes(server, api_key):
    sent: list[httpx.Request] = []
    with HaldirClient(api_key=api_key, base_url=server.base_url, http_client=httpx.Client(event_hooks={"request": [sent.append]})) as h:
        assert h.position == 0
        sid = h.create_session("position-bot")["session_id"]
        written = h.position
        assert written > 0 and "haldir-position" not in sent[0].headers
        assert h.get_session(sid)["is_valid"]
        assert sent[-1].headers["haldir-position"] == str(written)
