# The two commands in README.md: `make run` and `make test`.
.PHONY: run test build bench

run:
	go run ./cmd/haldir serve

test:
	./scripts/test.sh

build:
	go build -o bin/haldir ./cmd/haldir

bench:
	go run ./bench -duration 10s
