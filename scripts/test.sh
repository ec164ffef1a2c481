#!/usr/bin/env bash
# The whole test suite: Go (vet, tests with the race detector) and the
# Python and TypeScript SDKs against a real server.
#
# Postgres tests run against HALDIR_TEST_POSTGRES (default
# postgres://haldir:haldir@127.0.0.1:5432/postgres); they skip when it is
# unreachable, except under CI=true, where they fail. The SDK scripts install
# their dependencies once into sdk/python/.venv and sdk/typescript/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "go vet"
go vet ./...

step "go test -race"
go test -race -count=1 -timeout 20m ./...

step "Python SDK"
sdk/python/run_tests.sh -q

step "TypeScript SDK"
sdk/typescript/run_tests.sh
