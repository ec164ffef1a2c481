#!/usr/bin/env bash
# The whole test suite: Go (vet, tests with the race detector) and the
# Python and TypeScript SDKs against a real server.
#
# Postgres tests run against HALDIR_TEST_POSTGRES (default
# postgres://haldir:haldir@127.0.0.1:5432/postgres); they skip when it is
# unreachable, except under CI=true, where they fail. The SDK scripts install
# their dependencies once into sdk/python/.venv and sdk/typescript/node_modules.
# The MCP proxy tests run real MCP peers from npm (the everything server and
# the TypeScript SDK), installed once into proxy/testdata/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if [ ! -d proxy/testdata/node_modules/@modelcontextprotocol/server-everything ] ||
  [ ! -d proxy/testdata/node_modules/@modelcontextprotocol/sdk ]; then
  step "npm ci --prefix proxy/testdata (MCP test peers)"
  npm ci --prefix proxy/testdata --no-audit --no-fund --loglevel=error
fi

step "go vet"
go vet ./...

step "go test -race"
go test -race -count=1 -timeout 20m ./...

# go test shows a skipped test's message only with -v: say out loud
# whether the KurrentDB backend's server tests ran (they need
# HALDIR_TEST_KURRENTDB naming a reachable server; none can run here).
step "KurrentDB server tests"
go test -count=1 -v -run 'KurrentDB' ./events/kurrentstore/ | grep -E 'NOT RUN|^(--- |ok|FAIL|PASS)' || true

step "Python SDK"
sdk/python/run_tests.sh -q

step "TypeScript SDK"
sdk/typescript/run_tests.sh

step "deploy checks"
deploy/check.sh
