"""The examples stay correct: all compile, and the ones that need no LLM run."""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import skip_unless_route

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_compiles(path: Path):
    py_compile.compile(str(path), doraise=True)


def _run(name: str, server, api_key: str) -> str:
    env = {**os.environ, "HALDIR_API_KEY": api_key, "HALDIR_BASE_URL": server.base_url}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart_runs(server, api_key):
    out = _run("quickstart.py", server, api_key)
    assert "may read? True" in out and "may delete? False" in out
    assert "refused:" in out and "after revocation: session has been revoked" in out
    assert "audit chain verified: True" in out


def test_approvals_example_runs(server):
    skip_unless_route(server, "GET", "/v1/approvals/pending", "The approvals API")
    out = _run("approvals.py", server, server.new_tenant("approvals-example"))
    assert "ordered a r760" in out
