# syntax=docker/dockerfile:1
#
# Haldir as one static binary on distroless, as non-root (65532), made for a
# read-only root filesystem: the only place it writes is /data (the embedded
# SQLite store and its generated keys; nothing at all with DATABASE_URL).
#
#   docker build -t haldir .
#   docker run --read-only -p 8000:8000 -v haldir-data:/data haldir
#
# deploy/check.sh runs this file's build command outside Docker and checks
# the result is statically linked.

ARG GO_VERSION=1.26.8

# The build stage runs on the builder's platform and cross-compiles (pure Go:
# the SQLite driver is modernc), so multi-platform builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/haldir-dev/haldir/cli.Version=${VERSION}" -o /out/haldir ./cmd/haldir
# /data exists and belongs to the runtime user, so a fresh named volume
# mounted there is writable by it.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /data
COPY --from=build /out/haldir /haldir
USER 65532:65532
VOLUME ["/data"]
EXPOSE 8000
# No shell or curl here: the binary asks its own /readyz (exit 0 ready, 1 not
# ready, 3 unreachable). Compose and the Helm chart set their own checks.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/haldir", "ready", "--base-url", "http://127.0.0.1:8000"]
ENTRYPOINT ["/haldir"]
CMD ["serve", "--addr", ":8000", "--data-dir", "/data"]
