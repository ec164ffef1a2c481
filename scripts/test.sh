#!/usr/bin/env bash
# The whole test suite. Postgres tests run against HALDIR_TEST_POSTGRES
# (default postgres://haldir:haldir@127.0.0.1:5432/postgres); they skip when
# it is unreachable, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
