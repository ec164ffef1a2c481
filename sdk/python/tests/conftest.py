"""Test fixtures: a real Haldir server, built from this repository and started
on a free loopback port with a temporary data directory, once per test run.

Environment:
    HALDIR_TEST_BINARY  use this haldir binary instead of running `go build`.
    HALDIR_TEST_KEEP_LOGS=1  print the server log at the end of the run.

Each test module gets its own tenant (through the operator route
POST /v1/tenants), so approval rules or rate limits set by one test cannot
leak into another.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

# Frameworks must not try to phone home from a machine without internet.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

from haldir import HaldirClient  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "test-operator-" + uuid.uuid4().hex


class Server:
    """A running haldir server."""

    def __init__(self, base_url: str, admin_token: str, log_path: Path, binary: Path) -> None:
        self.base_url = base_url
        self.admin_token = admin_token
        self.log_path = log_path
        self.binary = binary

    def new_tenant(self, name: str) -> str:
        """Create a tenant and return its first API key."""
        with HaldirClient(api_key=self.admin_token, base_url=self.base_url) as operator:
            return operator.create_tenant(name)["key"]

    def route_missing(self, method: str, path: str) -> bool:
        """Whether this build does not serve ``method path`` yet. The router
        answers 404 for an unknown route before authenticating, while a
        served route answers an unauthenticated probe with 401."""
        return httpx.request(method, self.base_url + path, timeout=10).status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_binary(workdir: Path) -> Path:
    given = os.environ.get("HALDIR_TEST_BINARY")
    if given:
        return Path(given)
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the SDK tests need Go to build the Haldir server (or set HALDIR_TEST_BINARY)")
    binary = workdir / "haldir"
    started = time.monotonic()
    proc = subprocess.run([go, "build", "-o", str(binary), "./cmd/haldir"], cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"go build ./cmd/haldir failed:\n{proc.stderr}")
    print(f"\n[haldir tests] built the server in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return binary


@contextlib.contextmanager
def run_server(binary: Path, workdir: Path, admin_token: str = "") -> Iterator[Server]:
    """Start `haldir serve` on a free port with its data in ``workdir``; stop it on exit."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    args = [str(binary), "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", str(workdir / "data"), "--log-format", "text"]
    if admin_token:
        args += ["--admin-token", admin_token]
    with open(log_path, "w") as log_file:
        # The tests' webhook receivers listen on loopback, which the server's
        # SSRF guard refuses unless told otherwise.
        env = {**os.environ, "HALDIR_ALLOW_PRIVATE_NETWORKS": "true"}
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"haldir serve exited with {proc.returncode}:\n{log_path.read_text()}")
                try:
                    if httpx.get(base_url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"haldir serve was not ready within 60s:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield Server(base_url, admin_token, log_path, binary)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if os.environ.get("HALDIR_TEST_KEEP_LOGS"):
        print(log_path.read_text(), file=sys.stderr)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix="haldir-sdk-py-"))
    try:
        try:
            binary = _build_binary(workdir)
            server_cm = run_server(binary, workdir, ADMIN_TOKEN)
            srv = server_cm.__enter__()
        except RuntimeError as exc:
            # Every test needs the server: stop the run once, with the reason,
            # instead of failing each test on its own.
            pytest.exit(f"cannot run the SDK tests: {exc}", returncode=1)
        try:
            yield srv
        finally:
            server_cm.__exit__(None, None, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def api_key(server: Server, request: pytest.FixtureRequest) -> str:
    """A fresh tenant's `*` key for this test module."""
    return server.new_tenant(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def client(server: Server, api_key: str) -> Iterator[HaldirClient]:
    with HaldirClient(api_key=api_key, base_url=server.base_url) as c:
        yield c


@pytest.fixture
def new_session(client: HaldirClient):
    """Make a session: new_session(scopes=[...], spend_limit=...)."""

    def make(scopes=("tool",), **kwargs):
        return client.create_session(f"agent-{uuid.uuid4().hex[:8]}", scopes=list(scopes), **kwargs)["session_id"]

    return make


class Counter:
    """Counts how often a tool body really ran."""

    def __init__(self) -> None:
        self.calls = 0

    def hit(self) -> None:
        self.calls += 1


@pytest.fixture
def counter() -> Counter:
    return Counter()


def skip_unless_route(server: Server, method: str, path: str, feature: str) -> None:
    """Skip the test while this server build does not serve the route yet."""
    if server.route_missing(method, path):
        pytest.skip(f"{feature} is not served by this Haldir build yet ({method} {path} answers 404); this test runs once it lands")


@pytest.fixture
def tenant_client(server: Server, request: pytest.FixtureRequest) -> Iterator[HaldirClient]:
    """A client for a tenant of its own, for tests that change tenant-wide
    settings (approval rules, policies)."""
    key = server.new_tenant(request.node.name[:60])
    with HaldirClient(api_key=key, base_url=server.base_url) as c:
        yield c
