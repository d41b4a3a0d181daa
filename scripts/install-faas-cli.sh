#!/usr/bin/env bash
# Install faas-cli 0.18.12 (and optionally of-watchdog 0.11.6) with `go install` into $REPO/.cache/bin.
# Tags lack the "v" prefix, so both are installed by pseudo-version (docs: RUNTIMES.md section 5).
# Usage: scripts/install-faas-cli.sh [--with-watchdog]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${REPO}/.cache/bin"
FAAS_CLI_VERSION="0.18.12"
FAAS_CLI_MODULE="github.com/openfaas/faas-cli@v0.0.0-20260724145813-c8191b71e7ed"
WATCHDOG_VERSION="0.11.6"
WATCHDOG_MODULE="github.com/openfaas/of-watchdog@v0.0.0-20260513144341-9bdadb1e8c68"

if ! command -v go >/dev/null 2>&1; then
  echo "install-faas-cli: go is not on PATH (Debian: apt-get install golang-go, or /usr/local/go/bin)" >&2
  exit 1
fi
mkdir -p "${BIN}"

if [[ -x "${BIN}/faas-cli" ]] && "${BIN}/faas-cli" version --short-version 2>/dev/null | grep -q "${FAAS_CLI_VERSION}"; then
  echo "faas-cli ${FAAS_CLI_VERSION} already in ${BIN}"
else
  echo "installing faas-cli ${FAAS_CLI_VERSION} into ${BIN}"
  GOBIN="${BIN}" CGO_ENABLED=0 go install \
    -ldflags "-s -w -X github.com/openfaas/faas-cli/version.Version=${FAAS_CLI_VERSION}" \
    "${FAAS_CLI_MODULE}"
fi

if [[ "${1:-}" == "--with-watchdog" ]]; then
  if [[ -x "${BIN}/of-watchdog" ]]; then
    echo "of-watchdog already in ${BIN}"
  else
    echo "installing of-watchdog ${WATCHDOG_VERSION} into ${BIN}"
    GOBIN="${BIN}" CGO_ENABLED=0 go install -ldflags "-s -w -X main.Version=${WATCHDOG_VERSION}" "${WATCHDOG_MODULE}"
  fi
fi
"${BIN}/faas-cli" version --short-version
