#!/usr/bin/env bash
# Build Kubepredict's container images locally, without a Docker daemon and without pulling anything
# (docs: /work/handoff/images.md; `make images`).
#
#   scripts/images.sh build [job|upload|train|predict|result|pause ...]   base image + the named images
#                                (default: the job and function images; pause = the pod sandbox image)
#   scripts/images.sh base       only the base image (Debian bookworm + python3 + venv, built with mmdebstrap)
#   scripts/images.sh env        print the settings the tests use (CONTAINERS_CONF, image names, ...)
#   scripts/images.sh podman ARGS...   podman with our private configuration (e.g. `images`, `run`, `rmi`)
#   scripts/images.sh save IMAGE FILE  an OCI archive of IMAGE (for `ctr -n k8s.io images import`)
#
# Everything lives under $IMAGES_CACHE (~/.cache/kubepredict/images): our own containers.conf and
# storage.conf (runc, cgroupfs, default ulimits nofile/nproc 1024 -- podman's defaults exceed the hard
# limits of these VMs; the overlay driver where the kernel has it, else vfs: STORAGE_DRIVER=vfs forces
# it), the image store, and the base image's root file system tarball.
# Layers are cached between runs (podman build --layers), so a warm `make images` takes seconds.
#
# The base image stands in for python:3.11.11-slim-bookworm, which cannot be pulled here: Debian 12's
# python3 (3.11.2) in a virtualenv at /opt/python that is first on PATH, so `python` and `pip` behave
# as in the official image (pip installs into the venv, not into Debian's externally managed Python).
# The Dockerfiles take it as a build argument (PYTHON_IMAGE); their default stays the public image.
# The function images are built with `--target server`: the of-watchdog stage cannot be pulled either,
# so the function's server (index.py, uvicorn) runs directly, listening on port 5000.
#
# Builds run with the host's network (--network host) and, read-only, the host's CA bundle and pip
# configuration (bind mounts, not layers): pip reaches PyPI exactly as on the host.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES_CACHE="${IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubepredict/images}"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/kubepredict}"
IMAGE_TAG="${IMAGE_TAG:-local}"
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES="python3,python3-venv,ca-certificates,passwd"
BASE_PIP="pip==26.3"
FUNCTIONS="upload train predict result"
TEMPLATE="$REPO/template/kubepredict-python3-http"

# overlay where the kernel has it (root, ext4/xfs: these VMs), else vfs. vfs works everywhere but keeps a
# full copy of the root file system for every build step: the job image alone filled 12 GB half-way
# through its build, where overlay keeps only each step's changes.
if [ -z "${STORAGE_DRIVER:-}" ]; then
  if [ "$(id -u)" -eq 0 ] && grep -qw overlay /proc/filesystems; then STORAGE_DRIVER=overlay; else STORAGE_DRIVER=vfs; fi
fi

export CONTAINERS_CONF="$IMAGES_CACHE/containers.conf"
export CONTAINERS_STORAGE_CONF="$IMAGES_CACHE/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$IMAGES_CACHE/registries.conf"

log() { printf '[images.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The base recipe's hash names the base image: change the recipe and the base (and every layer on it)
# is rebuilt; keep it and warm runs reuse everything.
base_key() {
  printf '%s\n' "$DEBIAN_SUITE" "$BASE_PACKAGES" "$BASE_PIP" "v1" | sha256sum | cut -c1-12
}
BASE_IMAGE="$IMAGE_PREFIX/base:$DEBIAN_SUITE-$(base_key)"

write_config() {
  mkdir -p "$IMAGES_CACHE/tmp"
  cat >"$CONTAINERS_CONF.tmp" <<EOF
# Written by scripts/images.sh: podman/buildah settings for these machines.
[containers]
# podman's defaults exceed this VM's hard limits ("setrlimit: operation not permitted")
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# crun 1.8 refuses these VMs' hybrid cgroups ("cgroups in hybrid mode not supported"): runc
runtime = "runc"
image_copy_tmp_dir = "$IMAGES_CACHE/tmp"
EOF
  cat >"$CONTAINERS_STORAGE_CONF.tmp" <<EOF
# Written by scripts/images.sh: a private image store, one per storage driver.
[storage]
driver = "$STORAGE_DRIVER"
graphroot = "$IMAGES_CACHE/storage-$STORAGE_DRIVER"
runroot = "$IMAGES_CACHE/run-$STORAGE_DRIVER"
EOF
  cat >"$CONTAINERS_REGISTRIES_CONF.tmp" <<'EOF'
# Written by scripts/images.sh: no registry is searched for short names (nothing can be pulled here).
unqualified-search-registries = []
short-name-mode = "permissive"
EOF
  mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
  mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"
  mv "$CONTAINERS_REGISTRIES_CONF.tmp" "$CONTAINERS_REGISTRIES_CONF"
}

need() { command -v "$1" >/dev/null || die "$1 not found: $2"; }

podman_() { TMPDIR="$IMAGES_CACHE/tmp" podman "$@"; }

image_exists() { podman_ image exists "$1" 2>/dev/null; }

build_base() {
  image_exists "$BASE_IMAGE" && { log "base: $BASE_IMAGE present"; return 0; }
  local tar="$IMAGES_CACHE/base-$(base_key).tar" t0=$SECONDS
  if [ ! -s "$tar" ]; then
    need mmdebstrap "apt-get install mmdebstrap (make setup-services)"
    log "base: mmdebstrap $DEBIAN_SUITE ($BASE_PACKAGES) from $DEBIAN_MIRROR (cold: ~2-3 min)"
    # pip in the venv uses its own certifi: point it at the host's CA bundle for the one upgrade
    local ca=/etc/ssl/certs/ca-certificates.crt
    mmdebstrap --variant=minbase --include="$BASE_PACKAGES" \
      --aptopt='Acquire::Check-Valid-Until "false"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='chroot "$1" python3 -m venv /opt/python' \
      --customize-hook="cp $ca \"\$1/tmp/host-ca.crt\"" \
      --customize-hook="chroot \"\$1\" env -i PATH=/usr/bin:/bin PIP_CERT=/tmp/host-ca.crt PIP_NO_CACHE_DIR=1 /opt/python/bin/pip install -q -U $BASE_PIP" \
      --customize-hook='rm -f "$1/tmp/host-ca.crt"; find "$1/opt/python" -name __pycache__ -prune -exec rm -rf {} +' \
      --format=tar "$DEBIAN_SUITE" "$tar.partial" "$DEBIAN_MIRROR" >"$IMAGES_CACHE/mmdebstrap.log" 2>&1 \
      || { tail -20 "$IMAGES_CACHE/mmdebstrap.log" >&2; rm -rf "$tar.partial"; die "mmdebstrap failed"; }
    mv "$tar.partial" "$tar"
  fi
  podman_ import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.description=Debian $DEBIAN_SUITE python3 venv (kubepredict test base)" \
    "$tar" "$BASE_IMAGE" >/dev/null
  log "base: $BASE_IMAGE ready in $((SECONDS - t0)) s ($(du -h "$tar" | cut -f1) root fs)"
}

build_args() {  # common to every image build
  local a=(--layers --network host --build-arg "PYTHON_IMAGE=$BASE_IMAGE")
  [ -f /etc/ssl/certs/ca-certificates.crt ] && a+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  [ -f /etc/pip.conf ] && a+=(--volume /etc/pip.conf:/etc/pip.conf:ro)
  printf '%s\0' "${a[@]}"
}

build_job() {
  local t0=$SECONDS args
  mapfile -d '' args < <(build_args)
  log "job: building $IMAGE_PREFIX/job:$IMAGE_TAG from infra/docker/job.Dockerfile"
  podman_ build "${args[@]}" -f "$REPO/infra/docker/job.Dockerfile" -t "$IMAGE_PREFIX/job:$IMAGE_TAG" "$REPO" \
    >"$IMAGES_CACHE/build-job.log" 2>&1 || { tail -30 "$IMAGES_CACHE/build-job.log" >&2; die "job image build failed"; }
  log "job: built in $((SECONDS - t0)) s"
}

function_context() {  # what `faas-cli build --shrinkwrap` lays out in build/<fn>/ (stack.yml copy: [./shared])
  local fn="$1" ctx="$IMAGES_CACHE/context/$1"
  rm -rf "$ctx"; mkdir -p "$ctx/function"
  cp -a "$TEMPLATE/." "$ctx/"
  rm -rf "$ctx/function"; mkdir -p "$ctx/function"
  cp -a "$REPO/functions/$fn/." "$ctx/function/"
  (cd "$REPO" && tar --exclude='__pycache__' --exclude='*.egg-info' --exclude='build' -cf - shared) \
    | tar -xf - -C "$ctx/function"
  # the same mtimes every run: content-addressed layer cache hits do not depend on them, but be tidy
  find "$ctx" -name __pycache__ -prune -exec rm -rf {} +
  echo "$ctx"
}

build_function() {
  local fn="$1" t0=$SECONDS ctx args
  ctx="$(function_context "$fn")"
  mapfile -d '' args < <(build_args)
  log "$fn: building $IMAGE_PREFIX/$fn:$IMAGE_TAG from template/kubepredict-python3-http/Dockerfile (--target server)"
  podman_ build "${args[@]}" --target server -f "$ctx/Dockerfile" -t "$IMAGE_PREFIX/$fn:$IMAGE_TAG" "$ctx" \
    >"$IMAGES_CACHE/build-$fn.log" 2>&1 || { tail -30 "$IMAGES_CACHE/build-$fn.log" >&2; die "$fn image build failed"; }
  log "$fn: built in $((SECONDS - t0)) s"
}

cmd_build() {
  local t0=$SECONDS targets=("$@")
  need podman "apt-get install podman runc (make setup-services)"
  [ ${#targets[@]} -gt 0 ] || targets=(job $FUNCTIONS)
  write_config
  exec 9>"$IMAGES_CACHE/build.lock"   # one build at a time (parallel test workers, two checkouts)
  flock 9
  build_base
  for t in "${targets[@]}"; do
    case "$t" in
      job) build_job ;;
      upload|train|predict|result) build_function "$t" ;;
      pause) build_pause ;;
      *) die "unknown image $t (job, upload, train, predict, result)" ;;
    esac
  done
  # dangling layers of earlier builds (vfs keeps full copies): drop them so the cache does not grow
  podman_ image prune -f >/dev/null 2>&1 || true
  log "images ready in $((SECONDS - t0)) s: ${targets[*]} ($STORAGE_DRIVER store $(du -sh "$IMAGES_CACHE/storage-$STORAGE_DRIVER" | cut -f1))"
}

build_pause() {  # the pod sandbox image: a static Go binary that sleeps until SIGTERM (scripts/pause/main.go)
  local img="$IMAGE_PREFIX/pause:$IMAGE_TAG" dir="$IMAGES_CACHE/pause"
  image_exists "$img" && return 0
  need go "install Go (the pause binary is built from scripts/pause/main.go)"
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$REPO/scripts/pause/main.go" "$dir/"
  printf 'module local/pause\n\ngo 1.22\n' >"$dir/go.mod"
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o pause .)
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/Containerfile"
  podman_ build -q --network none -t "$img" -f "$dir/Containerfile" "$dir" >/dev/null
  log "pause: $img built"
}

cmd_env() {
  echo "CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
  echo "CONTAINERS_REGISTRIES_CONF=$CONTAINERS_REGISTRIES_CONF"
  echo "IMAGES_CACHE=$IMAGES_CACHE"
  echo "STORAGE_DRIVER=$STORAGE_DRIVER"
  echo "BASE_IMAGE=$BASE_IMAGE"
  echo "JOB_IMAGE=$IMAGE_PREFIX/job:$IMAGE_TAG"
  echo "PAUSE_IMAGE=$IMAGE_PREFIX/pause:$IMAGE_TAG"
  for fn in $FUNCTIONS; do echo "$(echo "$fn" | tr a-z A-Z)_IMAGE=$IMAGE_PREFIX/$fn:$IMAGE_TAG"; done
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  base) need podman "apt-get install podman"; write_config; build_base ;;
  env) cmd_env ;;
  podman) shift; write_config; podman_ "$@" ;;
  save) shift; write_config; rm -f "$2"; podman_ save --format oci-archive -o "$2" "$1" ;;
  *) echo "usage: $0 build [job|upload|train|predict|result ...] | base | env | podman ARGS... | save IMAGE FILE" >&2; exit 2 ;;
esac
