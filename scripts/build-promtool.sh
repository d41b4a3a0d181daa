#!/usr/bin/env bash
# Build upstream promtool (Prometheus 3.x, module v0.316.0) from the Go module proxy into
# ~/.cache/kubepredict/promtool/bin. Debian's promtool is built without Kubernetes service discovery and
# so cannot check infra/prometheus/prometheus.yml; this one can. Cold: ~4 min on 2 cores; warm: instant.
set -euo pipefail
PROMTOOL_MODULE="github.com/prometheus/prometheus/cmd/promtool@v0.316.0"
CACHE="${PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubepredict/promtool}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ -x "$CACHE/bin/promtool" ]]; then
  echo "[build-promtool] $CACHE/bin/promtool already built"
  exit 0
fi
if [[ ! -x "$GO" ]]; then
  echo "[build-promtool] no Go toolchain; the cluster Prometheus config check will skip (fail under CI=true)" >&2
  exit 0
fi
mkdir -p "$CACHE/bin"
start=$(date +%s)
echo "[build-promtool] building $PROMTOOL_MODULE (a few minutes, once)"
GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOBIN="$CACHE/bin" GOFLAGS=-p=2 CGO_ENABLED=0 \
  nice -n 10 "$GO" install -ldflags "-s -w" "$PROMTOOL_MODULE"
echo "[build-promtool] built in $(( $(date +%s) - start )) s"
