#!/usr/bin/env bash
# Install / fetch the real backing services used by the integration tests.
#
#   PostgreSQL 15, Prometheus + Pushgateway, Chromium     -> Debian packages (apt)
#   podman, buildah, crun, mmdebstrap, skopeo, containerd -> Debian packages (apt; scripts/images.sh)
#   Kafka 4.1.1 (KRaft) runtime jars + log4j2 binding      -> Maven Central (mvn)
#   S3Proxy 4.0.0 jar-with-dependencies                    -> Maven Central (mvn)
#
# Jars land in ~/.cache/kubepredict/jars (outside the clone, so every checkout reuses them). Idempotent: every step is
# skipped when its result is already present. Needs root for apt (CI and dev
# machines run as root); Java 17+ and Maven must already be on the machine.
#
# The tests themselves start every service on 127.0.0.1 and free high ports;
# this script only makes sure the binaries/jars are there, and stops any
# system PostgreSQL/Prometheus/Pushgateway a package postinst may have started
# on the default ports.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JARS="${KUBEPREDICT_JARS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubepredict/jars}"   # same override as tests/services
KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3
S3PROXY_VERSION=4.0.0
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
KAFKA_LIBS="$JARS/kafka-$KAFKA_VERSION"
S3PROXY_DIR="$JARS/s3proxy-$S3PROXY_VERSION"
S3PROXY_JAR="$S3PROXY_DIR/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"

# mvn -q still prints stray ANSI resets; keep its output for the error message only
mvn_quiet() {
  local log rc=0; log=$(mktemp)
  mvn -q -B -Dstyle.color=never "$@" >"$log" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -n 30 >&2; fi
  rm -f "$log"; return $rc
}
step() { printf '[setup-services] %s\n' "$*"; }
die() { printf '[setup-services] ERROR: %s\n' "$*" >&2; trap - ERR; exit 1; }
trap 'printf "[setup-services] ERROR: command failed (exit %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- apt ------
# package -> a file that proves it is installed
declare -A APT_PROBE=(
  [postgresql]=/usr/lib/postgresql/15/bin/postgres
  [prometheus]=/usr/bin/prometheus
  [prometheus-pushgateway]=/usr/bin/prometheus-pushgateway
  [chromium]=/usr/bin/chromium
  # container images without a Docker daemon (scripts/images.sh) and the one-node cluster
  [podman]=/usr/bin/podman
  [buildah]=/usr/bin/buildah
  [crun]=/usr/bin/crun
  [runc]=/usr/sbin/runc
  [mmdebstrap]=/usr/bin/mmdebstrap
  [skopeo]=/usr/bin/skopeo
  [uidmap]=/usr/bin/newuidmap
  [containerd]=/usr/bin/containerd
  [containernetworking-plugins]=/usr/lib/cni/bridge
)
APT_PACKAGES=(postgresql prometheus prometheus-pushgateway chromium
              podman buildah crun runc mmdebstrap skopeo uidmap containerd containernetworking-plugins)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] \
     && [ -e "${APT_PROBE[$pkg]}" ]; then
    :
  else
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  step "apt: ${APT_PACKAGES[*]} already installed"
else
  [ "$(id -u)" -eq 0 ] || die "apt packages missing (${missing[*]}) and not root: run 'sudo $0'"
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  step "apt: apt-get update"
  # other jobs on the machine may hold the dpkg lock: wait for it instead of failing
  APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
  DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -qq || die "apt-get update failed"
  step "apt: installing ${missing[*]}"
  # policy-rc.d 101 stops postinsts from starting daemons where invoke-rc.d is used
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  if [ $had_policy -eq 0 ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
  rc=0; aptlog=$(mktemp)
  DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 "${missing[@]}" >"$aptlog" 2>&1 || rc=$?
  [ $had_policy -eq 1 ] || rm -f /usr/sbin/policy-rc.d
  if [ $rc -ne 0 ]; then tail -n 30 "$aptlog" >&2; rm -f "$aptlog"; die "apt-get install ${missing[*]} failed (exit $rc)"; fi
  rm -f "$aptlog"
fi

# ------------------------------------------- stop system daemons on default ports
stopped=()
if command -v systemctl >/dev/null; then
  systemd_up=0; [ -d /run/systemd/system ] && systemd_up=1
  for unit in prometheus prometheus-pushgateway prometheus-node-exporter postgresql; do
    # 'disable' also works offline (no running systemd): it just removes the wants/ symlinks
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      systemctl disable "$unit" >/dev/null 2>&1 || true
      stopped+=("$unit(disabled)")
    fi
    if [ $systemd_up -eq 1 ] && systemctl is-active --quiet "$unit" 2>/dev/null; then
      systemctl stop "$unit" >/dev/null 2>&1 || true
      stopped+=("$unit(stopped)")
    fi
  done
fi
# no systemd (containers): the sysv scripts / pg_ctlcluster may still have started them
if command -v pg_lsclusters >/dev/null; then
  while read -r ver name _port status _rest; do
    if [ "$status" = online ]; then
      pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
      stopped+=("postgresql@$ver-$name")
    fi
    # don't auto-start it on boot either
    conf="/etc/postgresql/$ver/$name/start.conf"
    if [ -f "$conf" ] && ! grep -qx manual "$conf"; then echo manual >"$conf"; fi
  done < <(pg_lsclusters --no-header 2>/dev/null || true)
fi
for svc in prometheus prometheus-pushgateway prometheus-node-exporter; do
  if [ -x "/etc/init.d/$svc" ] && pgrep -x "$svc" >/dev/null 2>&1; then
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    stopped+=("$svc")
  fi
done
if [ ${#stopped[@]} -eq 0 ]; then
  step "daemons: no system postgresql/prometheus running on default ports"
else
  step "daemons: stopped/disabled system ${stopped[*]}"
fi

# ---------------------------------------------------------------- jars -----
command -v java >/dev/null || die "java not found (need Java 17+: apt-get install openjdk-17-jre-headless)"
command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
jv=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')
[ "${jv%%.*}" -ge 17 ] 2>/dev/null || die "Java 17+ required, found '${jv:-unknown}'"
mkdir -p "$JARS"

kafka_ok() {
  [ -f "$KAFKA_LIBS/.complete" ] && ls "$KAFKA_LIBS"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1
}
if kafka_ok; then
  step "kafka: $KAFKA_VERSION jars already in $KAFKA_LIBS ($(ls "$KAFKA_LIBS"/*.jar | wc -l) jars)"
else
  step "kafka: fetching kafka_2.13:$KAFKA_VERSION runtime + log4j-slf4j-impl:$LOG4J_VERSION into $KAFKA_LIBS"
  tmp=$(mktemp -d)
  cat >"$tmp/kafka-runtime.pom" <<EOF
<project><modelVersion>4.0.0</modelVersion>
  <groupId>local.ci</groupId><artifactId>kafka-runtime</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies></project>
EOF
  rm -rf "$KAFKA_LIBS.partial"
  if ! mvn_quiet -f "$tmp/kafka-runtime.pom" "$DEP_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.partial"; then
    rm -rf "$tmp" "$KAFKA_LIBS.partial"; die "mvn could not fetch the Kafka $KAFKA_VERSION jars"
  fi
  rm -rf "$tmp" "$KAFKA_LIBS"
  touch "$KAFKA_LIBS.partial/.complete"
  mv "$KAFKA_LIBS.partial" "$KAFKA_LIBS"
  kafka_ok || die "kafka jars incomplete in $KAFKA_LIBS"
  step "kafka: $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars, $(du -sh "$KAFKA_LIBS" | cut -f1)"
fi

if [ -s "$S3PROXY_JAR" ]; then
  step "s3proxy: $S3PROXY_VERSION jar already at $S3PROXY_JAR"
else
  step "s3proxy: fetching org.gaul:s3proxy:$S3PROXY_VERSION:jar-with-dependencies into $S3PROXY_DIR"
  mkdir -p "$S3PROXY_DIR"
  mvn_quiet "$DEP_PLUGIN:copy" -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
      -DoutputDirectory="$S3PROXY_DIR" || die "mvn could not fetch S3Proxy $S3PROXY_VERSION"
  [ -s "$S3PROXY_JAR" ] || die "S3Proxy jar missing after download: $S3PROXY_JAR"
  step "s3proxy: $(du -sh "$S3PROXY_JAR" | cut -f1)"
fi

step "done: services ready (jars in $JARS)"
