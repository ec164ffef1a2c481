#!/usr/bin/env bash
# Checks the deployment files by what runs without Docker or a cluster:
#
#   - deploy/check (a Go module of its own, so the server's module never
#     depends on Helm or Kubernetes): `helm lint --strict` and `helm template`
#     of deploy/helm/haldir through Helm's library, each rendered object
#     validated by kubeconform against strict JSON schemas made from
#     Kubernetes' own OpenAPI document (k8s.io/kubernetes from the Go module
#     proxy; no schema is downloaded from anywhere else), negative cases that
#     prove both validators refuse broken input, docker-compose.yml loaded
#     and validated by compose-go against the compose specification with its
#     promises asserted, and the Dockerfile's own `go build` run here, the
#     binary checked static, its version ldflag and its healthcheck command;
#   - `nginx -t` of deploy/nginx/haldir.conf, with the replicas' names
#     pointed at loopback, when nginx is installed (skipped otherwise).
#
#   deploy/check.sh          # everything
#   deploy/check.sh -short   # no binary build (about a minute less, cold)
#   VERBOSE=1 deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export GOWORK=off
args=(-count=1)
for a in "$@"; do
  case "$a" in
  -short) args+=(-short) ;;
  *) echo "usage: deploy/check.sh [-short]" >&2; exit 2 ;;
  esac
done
[ "${VERBOSE:-}" = 1 ] && args+=(-v)

echo "-- deploy/check: helm lint and template, kubeconform, compose, Dockerfile build"
(cd deploy/check && go test "${args[@]}" .)

echo "-- nginx -t deploy/nginx/haldir.conf"
if ! command -v nginx >/dev/null; then
  echo "note: nginx is not installed; skipped its config test (apt-get install nginx-light enables it)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# haldir-N resolves to 127.0.0.N (all loopback), the access log goes to the
# scratch directory; the rest of the file is tested as it is.
sed -E -e 's/^([[:space:]]*server[[:space:]]+)haldir-([0-9]+):/\1127.0.0.\2:/' \
  -e "s#/var/log/nginx/access.log#$tmp/access.log#" \
  deploy/nginx/haldir.conf >"$tmp/haldir.conf"
if grep -En '^[[:space:]]*server[[:space:]]+[a-z]' "$tmp/haldir.conf"; then
  echo "deploy/nginx/haldir.conf names an upstream server this script cannot point at loopback" >&2
  exit 1
fi
# The file is a conf.d snippet: it sits in the http block of the image's
# nginx.conf, as it does in the nginx image.
cat >"$tmp/nginx.conf" <<EOF
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events {}
http {
  client_body_temp_path $tmp/client_body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  include $tmp/haldir.conf;
}
EOF
nginx -t -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log"
