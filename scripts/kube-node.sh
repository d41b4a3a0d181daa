#!/usr/bin/env bash
# The rest of a one-node cluster beside scripts/kube-apiserver.sh: kube-controller-manager, kube-scheduler,
# kubelet, and kubectl (it applies infra/test-node as a user would), from the same Go module and version
# as the kube-apiserver we build (same wrapper module: k8s.io/kubernetes vK8S with every staging module
# replaced by its v0.N.M tag).
#
#   scripts/kube-node.sh build     build the four binaries into $KUBE_CACHE/bin (no-op when present)
#   scripts/kube-node.sh paths     print their paths
#
# Shares $KUBE_CACHE's Go module and build caches with kube-apiserver's build, so most of the
# dependency graph is compiled already when kube-apiserver was built first.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
KUBE_CACHE="${KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubepredict/kube}"
KUBE_BUILD_JOBS="${KUBE_BUILD_JOBS:-2}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOMODCACHE="$KUBE_CACHE/gomod" GOCACHE="$KUBE_CACHE/gobuild" GOPATH="$KUBE_CACHE/gopath"
export GOFLAGS="-p=$KUBE_BUILD_JOBS -buildvcs=false -mod=mod -modcacherw" CGO_ENABLED=0 GOTOOLCHAIN=local
export GONOSUMDB="" GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
COMPONENTS="kube-controller-manager kube-scheduler kubelet kubectl"

log() { printf '[kube-node.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

bin_of() { echo "$KUBE_CACHE/bin/$1-v$K8S_VERSION"; }

cmd_build() {
  local t0=$SECONDS minor src gomod c missing=()
  for c in $COMPONENTS; do [ -x "$(bin_of "$c")" ] || missing+=("$c"); done
  [ ${#missing[@]} -gt 0 ] || { log "binaries present"; return 0; }
  mkdir -p "$KUBE_CACHE/bin"
  exec 9>"$KUBE_CACHE/build.lock"; flock 9
  minor="0.${K8S_VERSION#1.}"
  src="$KUBE_CACHE/src/kube-node-v$K8S_VERSION"
  if [ ! -f "$src/go.mod" ]; then
    rm -rf "$src"; mkdir -p "$src"
    (
      cd "$src"
      "$GO" mod init local/kube-node >/dev/null 2>&1
      gomod="$("$GO" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
      awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod" | while read -r m; do
        "$GO" mod edit -replace="$m=$m@v$minor"
      done
    )
  fi
  for c in "${missing[@]}"; do  # a component added later (kubectl) joins an existing wrapper module
    grep -q "k8s.io/kubernetes/cmd/$c\$" "$src/go.mod" || (cd "$src" && "$GO" get -tool "k8s.io/kubernetes/cmd/$c@v$K8S_VERSION")
  done
  for c in "${missing[@]}"; do
    log "building $c v$K8S_VERSION"
    (cd "$src" && nice -n 10 "$GO" build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor#0.} \
      -X k8s.io/component-base/version.gitTreeState=clean" -o "$(bin_of "$c").tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$(bin_of "$c").tmp" "$(bin_of "$c")"
    log "$c built ($((SECONDS - t0)) s so far)"
  done
  log "node binaries ready in $((SECONDS - t0)) s"
}

case "${1:-}" in
  build) cmd_build ;;
  paths) for c in $COMPONENTS; do echo "$(echo "$c" | tr a-z- A-Z_)_BIN=$(bin_of "$c")"; done ;;
  *) echo "usage: $0 build | paths" >&2; exit 2 ;;
esac
