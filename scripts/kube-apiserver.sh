#!/usr/bin/env bash
# A real kube-apiserver + etcd for the integration tests (docs/SERVICES.md §5).
#
#   scripts/kube-apiserver.sh build            build both binaries into $KUBE_CACHE/bin (no-op when present)
#   scripts/kube-apiserver.sh start STATE_DIR  certs + tokens + etcd + kube-apiserver on 127.0.0.1, wait for /readyz
#   scripts/kube-apiserver.sh stop  STATE_DIR  stop both (SIGTERM, then SIGKILL), keep STATE_DIR for the logs
#   scripts/kube-apiserver.sh run   STATE_DIR  the same in the foreground until SIGTERM (tests/services/kube_apiserver.py)
#   scripts/kube-apiserver.sh paths            print the binary paths
#
# Binaries come from the Go module proxy: a wrapper module requires k8s.io/kubernetes vK8S and replaces
# every staging module (read from that tag's go.mod) by its v0.N.M tag; etcd is the server module at the
# version kube-apiserver's go.mod pins for its etcd client (3.6.x for 1.34), built in its own module so
# neither build's dependency graph moves the other's. Module and build caches live under $KUBE_CACHE so
# warm runs reuse them. The build runs under `nice` with -p=$KUBE_BUILD_JOBS (default 2).
# Measured on 2 shared cores: cold 283 s (etcd 41 s, kube-apiserver 238 s), cache 3.0 GB (2.3 GB Go
# build cache, 0.6 GB modules, 125 MB binaries; KUBE_TRIM_CACHE=1 keeps only the binaries); rebuild
# with warm Go caches 12 s; start to /readyz 3-4 s; stop < 1 s (5 s while a client holds a watch).
#
# After `start`, STATE_DIR/env holds KUBE_SERVER, KUBE_CA, KUBE_ADMIN_TOKEN, KUBE_RUNNER_TOKEN (a
# static token for user system:serviceaccount:kubepredict:kubepredict-runner in the service-account
# groups), KUBE_NOBODY_TOKEN (an authenticated user with no bindings), KUBE_AUDIT_LOG.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.34.4}"
KUBE_CACHE="${KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubepredict/kube}"  # outside the clone: every checkout reuses it
KUBE_BUILD_JOBS="${KUBE_BUILD_JOBS:-2}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

export GOMODCACHE="$KUBE_CACHE/gomod" GOCACHE="$KUBE_CACHE/gobuild" GOPATH="$KUBE_CACHE/gopath"
export GOFLAGS="-p=$KUBE_BUILD_JOBS -buildvcs=false -mod=mod -modcacherw" CGO_ENABLED=0 GOTOOLCHAIN=local
export GONOSUMDB="" GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

KAS_BIN="$KUBE_CACHE/bin/kube-apiserver-v$K8S_VERSION"
log() { printf '[kube-apiserver.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

etcd_version() {  # the etcd client version kube-apiserver's go.mod pins
  local gomod
  gomod="$("$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  awk '$1=="go.etcd.io/etcd/client/v3" {print substr($2,2); exit}' "$gomod"
}

build_kas() {
  [ -x "$KAS_BIN" ] && return 0
  local minor src t0=$SECONDS
  minor="0.${K8S_VERSION#1.}"
  src="$KUBE_CACHE/src/kube-apiserver-v$K8S_VERSION"
  rm -rf "$src"; mkdir -p "$src" "$KUBE_CACHE/bin"
  log "building kube-apiserver v$K8S_VERSION (cold: ~4-5 min measured on 2 shared cores; warm: seconds) in $src"
  (
    cd "$src"
    "$GO" mod init local/kube-apiserver >/dev/null 2>&1
    local gomod
    gomod="$("$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    # every `k8s.io/X => ./staging/src/k8s.io/X` of the tag's go.mod becomes k8s.io/X => k8s.io/X@v0.N.M
    awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod" | while read -r m; do
      "$GO" mod edit -replace="$m=$m@v$minor"
    done
    log "  $(grep -c '=>' go.mod) staging replaces; resolving modules"
    "$GO" get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION"
    log "  modules resolved after $((SECONDS - t0)) s; compiling"
    nice -n 10 "$GO" build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor#0.} \
      -X k8s.io/component-base/version.gitTreeState=clean" \
      -o "$KAS_BIN.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$KAS_BIN.tmp" "$KAS_BIN"
  log "kube-apiserver built in $((SECONDS - t0)) s: $KAS_BIN"
}

build_etcd() {
  local ev="$1" bin="$KUBE_CACHE/bin/etcd-v$1" src t0=$SECONDS
  [ -x "$bin" ] && return 0
  src="$KUBE_CACHE/src/etcd-v$ev"
  rm -rf "$src"; mkdir -p "$src" "$KUBE_CACHE/bin"
  log "building etcd v$ev (cold: ~1 min) in $src"
  (
    cd "$src"
    "$GO" mod init local/etcd >/dev/null 2>&1
    "$GO" get -tool "go.etcd.io/etcd/server/v3@v$ev"
    nice -n 10 "$GO" build -trimpath -ldflags "-s -w" -o "$bin.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$bin.tmp" "$bin"
  log "etcd built in $((SECONDS - t0)) s: $bin"
}

etcd_bin() {  # cached path without touching the network when already built
  local f
  if [ -f "$KUBE_CACHE/bin/etcd-version-for-v$K8S_VERSION" ]; then
    echo "$KUBE_CACHE/bin/etcd-v$(cat "$KUBE_CACHE/bin/etcd-version-for-v$K8S_VERSION")"; return
  fi
  f="$(etcd_version)"; mkdir -p "$KUBE_CACHE/bin"; echo "$f" >"$KUBE_CACHE/bin/etcd-version-for-v$K8S_VERSION"
  echo "$KUBE_CACHE/bin/etcd-v$f"
}

cmd_build() {
  local t0=$SECONDS eb
  [ -x "$GO" ] || { log "go not found (set GO=)"; exit 3; }
  mkdir -p "$KUBE_CACHE"
  exec 9>"$KUBE_CACHE/build.lock"   # one build at a time (parallel test workers, two checkouts' CI jobs)
  flock 9
  eb="$(etcd_bin)"
  build_etcd "${eb##*/etcd-v}"
  build_kas
  if [ "${KUBE_TRIM_CACHE:-0}" = 1 ]; then  # keep only bin/ (~125 MB): a later rebuild is cold again
    rm -rf "$KUBE_CACHE/gobuild" "$KUBE_CACHE/gomod" "$KUBE_CACHE/gopath" "$KUBE_CACHE/src"
  fi
  log "binaries ready in $((SECONDS - t0)) s; cache $(du -sh "$KUBE_CACHE" | cut -f1)"
}

cmd_paths() {
  echo "KUBE_APISERVER_BIN=$KAS_BIN"
  echo "ETCD_BIN=$(etcd_bin)"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

gen_certs() {  # a CA, a serving cert for 127.0.0.1/localhost, a service-account key pair
  local d="$1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kubepredict-test-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  cat >"$d/san.cnf" <<'EOF'
[ext]
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes.default.svc
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
EOF
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/san.cnf" -extensions ext -out "$d/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

cmd_run() {  # foreground: both servers are children of this shell, in its process group
  local d="${1:?usage: run STATE_DIR}" t0=$SECONDS eb etcd_client etcd_peer port admin runner nobody
  { [ -x "$KAS_BIN" ] && [ -x "$(etcd_bin)" ]; } || cmd_build
  eb="$(etcd_bin)"
  mkdir -p "$d"; d="$(cd "$d" && pwd)"
  rm -rf "$d/etcd-data" "$d/env" "$d/audit.log"; gen_certs "$d"
  admin="$(openssl rand -hex 16)"; runner="$(openssl rand -hex 16)"; nobody="$(openssl rand -hex 16)"
  # token,user,uid,"group1,group2": the runner is the ServiceAccount's user name in the SA groups,
  # so RoleBindings naming the ServiceAccount kubepredict/kubepredict-runner apply to it
  cat >"$d/tokens.csv" <<TOKENS
$admin,kubepredict-test-admin,uid-admin,"system:masters"
$runner,system:serviceaccount:kubepredict:kubepredict-runner,uid-runner,"system:serviceaccounts,system:serviceaccounts:kubepredict"
$nobody,kubepredict-test-nobody,uid-nobody
TOKENS
  # every request at Metadata level: the tests derive the verbs the runner used from this log
  cat >"$d/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
POLICY
  etcd_client="$(free_port)"; etcd_peer="$(free_port)"; port="${KUBE_APISERVER_PORT:-$(free_port)}"
  etcd_pid="" kas_pid=""
  trap 'stop_children; exit 0' TERM INT HUP
  trap 'stop_children' EXIT
  log "starting etcd $(basename "$eb") on 127.0.0.1:$etcd_client"
  "$eb" --name kubepredict-test --data-dir "$d/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "kubepredict-test=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync --quota-backend-bytes=$((512*1024*1024)) --log-level warn \
    >"$d/etcd.log" 2>&1 </dev/null &
  etcd_pid=$!
  local deadline=$((SECONDS + 30))
  until curl -sf "http://127.0.0.1:$etcd_client/health" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$etcd_pid" 2>/dev/null; then
      log "etcd did not become healthy; tail of $d/etcd.log:"; tail -20 "$d/etcd.log" >&2; exit 1
    fi
    sleep 0.2
  done
  log "etcd healthy after $((SECONDS - t0)) s; starting kube-apiserver v$K8S_VERSION on https://127.0.0.1:$port"
  "$KAS_BIN" \
    --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --cert-dir "$d" --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" \
    --client-ca-file "$d/ca.crt" \
    --token-auth-file "$d/tokens.csv" --anonymous-auth=false \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --audit-policy-file "$d/audit-policy.yaml" --audit-log-path "$d/audit.log" --audit-log-format json \
    --audit-log-mode blocking --audit-log-maxbackup 0 \
    --profiling=false --v=1 \
    >"$d/kube-apiserver.log" 2>&1 </dev/null &
  kas_pid=$!
  deadline=$((SECONDS + ${KUBE_READY_TIMEOUT:-120}))
  until curl -sf --cacert "$d/ca.crt" -H "Authorization: Bearer $admin" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$kas_pid" 2>/dev/null; then
      log "kube-apiserver not ready; tail of $d/kube-apiserver.log:"; tail -30 "$d/kube-apiserver.log" >&2; exit 1
    fi
    sleep 0.25
  done
  cat >"$d/env.tmp" <<ENV
KUBE_SERVER=https://127.0.0.1:$port
KUBE_CA=$d/ca.crt
KUBE_ADMIN_TOKEN=$admin
KUBE_RUNNER_TOKEN=$runner
KUBE_NOBODY_TOKEN=$nobody
KUBE_AUDIT_LOG=$d/audit.log
KUBE_STATE_DIR=$d
KUBE_VERSION=v$K8S_VERSION
ETCD_VERSION=$(basename "$eb" | sed 's/^etcd-//')
KUBE_READY_SECONDS=$((SECONDS - t0))
ENV
  mv "$d/env.tmp" "$d/env"
  log "kube-apiserver ready after $((SECONDS - t0)) s (state in $d, connection in $d/env)"
  # until told to stop, or until either server dies (then stop the other and fail)
  wait -n "$etcd_pid" "$kas_pid" || true
  log "a server exited on its own; tails of the logs:"; tail -5 "$d/etcd.log" "$d/kube-apiserver.log" >&2
  exit 1
}

term_and_wait() {  # pid grace_s: SIGTERM, then SIGKILL when it is still there after grace_s
  local pid="$1" i
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 $(($2 * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_children() {  # kube-apiserver first (graceful termination, audit log flushed), then etcd
  trap - TERM INT HUP EXIT
  # kube-apiserver does not wait for watches to drain, but its process lingers while a client keeps
  # a watch connection open: 5 s is plenty for the graceful part (it takes ~10 ms here)
  term_and_wait "${kas_pid:-}" 5
  term_and_wait "${etcd_pid:-}" 10
  log "stopped kube-apiserver and etcd"
}

cmd_start() {  # `run` in the background, in its own session; returns once /readyz answered
  local d="${1:?usage: start STATE_DIR}"
  mkdir -p "$d"; d="$(cd "$d" && pwd)"; rm -f "$d/env"
  { [ -x "$KAS_BIN" ] && [ -x "$(etcd_bin)" ]; } || cmd_build
  setsid "$0" run "$d" >"$d/run.log" 2>&1 </dev/null &
  echo $! >"$d/run.pid"
  until [ -f "$d/env" ]; do
    if ! kill -0 "$(cat "$d/run.pid")" 2>/dev/null; then cat "$d/run.log" >&2; exit 1; fi
    sleep 0.25
  done
  cat "$d/run.log" >&2; cat "$d/env"
}

cmd_stop() {  # SIGTERM the `run` shell (it stops both servers in order); SIGKILL the group after 20 s
  local d="${1:?usage: stop STATE_DIR}" pid i
  [ -f "$d/run.pid" ] || { log "nothing to stop in $d"; return 0; }
  pid="$(cat "$d/run.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 -- "-$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$d/run.pid" "$d/env"
  log "stopped (logs kept in $d)"
}

case "${1:-}" in
  build) cmd_build ;;
  start) shift; cmd_start "$@" ;;
  run) shift; cmd_run "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  paths) cmd_paths ;;
  *) echo "usage: $0 build | start STATE_DIR | stop STATE_DIR | run STATE_DIR | paths" >&2; exit 2 ;;
esac
