#!/usr/bin/env bash
# Runs the TypeScript SDK tests against a real Haldir server built from this
# repository, with the real Vercel AI SDK (`ai`, pinned by package-lock.json).
#
#   1. npm ci (only when node_modules is missing or older than the lock file)
#   2. tsc: build dist/ and type-check the examples
#   3. go build the server once; each test file starts its own on a free port
#   4. node --test
#
# Extra arguments go to node --test, e.g. sdk/typescript/run_tests.sh test/ai.test.mjs
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  start=$(date +%s)
  npm ci --no-audit --no-fund --loglevel=error
  echo "run_tests.sh: npm ci took $(( $(date +%s) - start ))s"
fi

npx tsc -p tsconfig.json
npx tsc -p tsconfig.examples.json

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
if [ -z "${HALDIR_TEST_BINARY:-}" ]; then
  (cd ../.. && go build -o "$workdir/haldir" ./cmd/haldir)
  export HALDIR_TEST_BINARY="$workdir/haldir"
fi

if [ "$#" -eq 0 ]; then
  set -- test/*.test.mjs
fi
node --test --test-reporter=spec "$@"
