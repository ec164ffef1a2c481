#!/usr/bin/env bash
# Runs the Python SDK tests against a real Haldir server built from this
# repository (the tests `go build` it and start it on a free loopback port).
#
# The SDK and the real framework packages (langchain-core, crewai,
# autogen-agentchat) are installed once into sdk/python/.venv, pinned by
# constraints.txt; the install is redone only when pyproject.toml or
# constraints.txt changes. Extra arguments go to pytest, e.g.
#   sdk/python/run_tests.sh -k langchain -x
#
# Environment: PYTHON (default python3), HALDIR_SDK_VENV (default .venv),
# HALDIR_SDK_UPDATE_CONSTRAINTS=1 to resolve afresh and rewrite constraints.txt.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${HALDIR_SDK_VENV:-.venv}
EXTRAS='.[test,langchain,crewai,autogen]'

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.haldir-sdk-installed"
if [ "${HALDIR_SDK_UPDATE_CONSTRAINTS:-}" = 1 ]; then
  start=$(date +%s)
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$EXTRAS"
  "$VENV/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^-e ' > constraints.txt
  touch "$stamp"
  echo "run_tests.sh: resolved and wrote constraints.txt in $(( $(date +%s) - start ))s"
elif [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  start=$(date +%s)
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$EXTRAS"
  touch "$stamp"
  echo "run_tests.sh: installed the SDK and its test dependencies in $(( $(date +%s) - start ))s"
fi

# Frameworks must not try to reach the internet from here.
export CREWAI_DISABLE_TELEMETRY=true CREWAI_DISABLE_TRACKING=true OTEL_SDK_DISABLED=true CREWAI_TRACING_ENABLED=false

exec "$VENV/bin/python" -m pytest "$@"
