"""A real kube-apiserver + etcd on 127.0.0.1 (built from the Go module proxy by scripts/kube-apiserver.sh).

The binaries are built once into ``~/.cache/kubepredict/kube/bin`` (docs/SERVICES.md §5: a wrapper module requiring
k8s.io/kubernetes with one ``replace`` per staging module; etcd at the version kube-apiserver's go.mod
pins for its client). A cold build takes minutes, so it runs before the server starts, under ``nice``,
with its progress on the terminal; warm runs reuse the binaries and the Go caches under ``~/.cache/kubepredict/kube``.

    with KubeAPIServer() as kube:
        admin = kube.api_client("admin")        # system:masters
        runner = kube.api_client("runner")      # system:serviceaccount:kubepredict:kubepredict-runner
        kube.audit_events()                     # the server's audit log (every request, Metadata level)

Authentication is a static token file: "runner" is a user named like the ServiceAccount and in the
service-account groups, so RoleBindings to ServiceAccount kubepredict/kubepredict-runner apply to it
exactly as to a pod's projected token. Authorization is RBAC only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import CACHE_ROOT, REPO_ROOT, Service, ServiceStartError, ServiceUnavailable, in_ci, wait_until

SCRIPT = REPO_ROOT / "scripts" / "kube-apiserver.sh"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.34.4")
KUBE_CACHE = Path(os.environ.get("KUBE_CACHE", CACHE_ROOT / "kube"))
KAS_BIN = KUBE_CACHE / "bin" / f"kube-apiserver-v{K8S_VERSION}"
#: the etcd version is looked up once (from kube-apiserver's go.mod) and remembered here by the script
ETCD_VERSION_FILE = KUBE_CACHE / "bin" / f"etcd-version-for-v{K8S_VERSION}"
BUILD_HINT = f"run `{SCRIPT.relative_to(REPO_ROOT)} build` (needs Go and the Go module proxy)"


def go_binary() -> str | None:
    """The Go toolchain: $GO if set (empty or missing = none), else go on PATH, else /usr/local/go/bin/go."""
    if "GO" in os.environ:
        return os.environ["GO"] if os.environ["GO"] and os.access(os.environ["GO"], os.X_OK) else None
    return shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)


def binaries_built() -> bool:
    """Both binaries are in the cache (no build needed)."""
    if not (KAS_BIN.is_file() and ETCD_VERSION_FILE.is_file()):
        return False
    return (KUBE_CACHE / "bin" / f"etcd-v{ETCD_VERSION_FILE.read_text().strip()}").is_file()


class KubeAPIServer(Service):
    name = "kube-apiserver"
    start_timeout = 180.0
    port_attrs = ()  # the script picks free ports itself
    #: a cold build on 2 cores takes a while; this bounds it
    build_timeout = float(os.environ.get("KUBE_BUILD_TIMEOUT", "3600"))

    def __init__(self) -> None:
        super().__init__()
        self.env: dict[str, str] = {}
        self.build_seconds: float | None = None
        self.ready_seconds: float | None = None
        self._run: subprocess.Popen | None = None

    # -- availability and build -------------------------------------------
    def check_available(self) -> None:
        for tool in ("bash", "openssl", "curl"):
            if not shutil.which(tool):
                raise ServiceUnavailable(f"`{tool}` not found (needed by {SCRIPT.name})")
        if binaries_built():
            return
        if go_binary() is None:
            raise ServiceUnavailable(
                f"kube-apiserver v{K8S_VERSION}/etcd not built in {KUBE_CACHE / 'bin'} and no Go toolchain to "
                f"build them: install Go (>= 1.24) and {BUILD_HINT}"
            )

    def ensure_built(self) -> None:
        """Build both binaries when the cache lacks them (progress on the terminal; minutes when cold)."""
        if binaries_built():
            return
        env = dict(os.environ, GO=go_binary() or "go", K8S_VERSION=K8S_VERSION, KUBE_CACHE=str(KUBE_CACHE))
        KUBE_CACHE.mkdir(parents=True, exist_ok=True)
        log = KUBE_CACHE / "build.log"
        out = sys.stderr
        print(
            f"\n[kube-apiserver] cache empty: building kube-apiserver v{K8S_VERSION} and etcd into {KUBE_CACHE} "
            f"(log {log}); a cold build took ~5 min on 2 shared cores",
            file=out,
            flush=True,
        )
        t0 = time.monotonic()
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                ["bash", str(SCRIPT), "build"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    fh.write(line)
                    if line.startswith(b"[kube-apiserver.sh"):  # progress lines, not every `go: downloading`
                        print(line.decode(errors="replace").rstrip(), file=out, flush=True)
                    if time.monotonic() - t0 > self.build_timeout:
                        raise TimeoutError(f"build took longer than {self.build_timeout:.0f} s")
                code = proc.wait()
            except BaseException:
                self._kill(proc)
                raise
        self.build_seconds = time.monotonic() - t0
        if code != 0 or not binaries_built():
            lines = log.read_text(errors="replace").splitlines()[-30:]
            raise ServiceStartError(
                f"building kube-apiserver/etcd failed (exit {code}); tail of {log}:\n" + "\n".join(lines)
            )
        print(f"[kube-apiserver] built in {self.build_seconds:.0f} s", file=out, flush=True)

    def start(self):
        if not self.started:
            self.check_available()
            self.ensure_built()
        return super().start()

    # -- lifecycle ------------------------------------------------------------
    def _start(self) -> None:
        assert self.tmpdir is not None
        env = dict(os.environ, K8S_VERSION=K8S_VERSION, KUBE_CACHE=str(KUBE_CACHE))
        t0 = time.monotonic()
        self._run = self._spawn(["bash", str(SCRIPT), "run", str(self.tmpdir)], env=env)
        envfile = self.tmpdir / "env"
        wait_until(
            envfile.is_file,
            timeout=self.start_timeout,
            interval=0.1,
            what="kube-apiserver /readyz",
            alive=self._alive(self._run),
        )
        self.ready_seconds = time.monotonic() - t0
        self.env = dict(line.split("=", 1) for line in envfile.read_text().splitlines() if "=" in line)

    def _log_files(self) -> list[Path]:
        files = [self.log_path]
        if self.tmpdir is not None:
            files += [self.tmpdir / "etcd.log", self.tmpdir / "kube-apiserver.log"]
        return [p for p in files if p is not None]

    def _stop(self) -> None:
        # SIGTERM to the script only: it stops kube-apiserver, then etcd, and exits; the base class then
        # SIGTERMs/SIGKILLs the whole process group if anything is left.
        if self._run is not None and self._run.poll() is None:
            self._run.terminate()
            try:
                self._run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    # -- clients ----------------------------------------------------------------
    @property
    def server(self) -> str:
        return self.env["KUBE_SERVER"]

    @property
    def ca_file(self) -> str:
        return self.env["KUBE_CA"]

    def token(self, who: str) -> str:
        """``admin`` (system:masters), ``runner`` (the ServiceAccount's identity) or ``nobody`` (no bindings)."""
        return self.env[f"KUBE_{who.upper()}_TOKEN"]

    def configuration(self, who: str = "admin", token: str | None = None) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = self.ca_file
        cfg.verify_ssl = True
        # kubernetes>=35 looks the token up as "BearerToken" (alias "authorization"), the prefix only
        # under the identifier: set both so older and newer clients send "Bearer <token>"
        token = token or self.token(who)
        cfg.api_key = {"BearerToken": token, "authorization": token}
        cfg.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}
        return cfg

    def api_client(self, who: str = "admin", token: str | None = None) -> Any:
        from kubernetes import client

        return client.ApiClient(self.configuration(who, token))

    def kubeconfig(self, path: Path, who: str = "admin") -> Path:
        """Write a kubeconfig for ``who`` (for the runner's kubeconfig code path)."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "certificate-authority": self.ca_file}}],
            "users": [{"name": who, "user": {"token": self.token(who)}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": who}}],
        }
        path.write_text(json.dumps(cfg))
        return path

    # -- audit ------------------------------------------------------------------
    @property
    def audit_log(self) -> Path:
        return Path(self.env["KUBE_AUDIT_LOG"])

    def audit_events(self, user: str | None = None) -> list[dict]:
        """Completed requests from the audit log (blocking mode: written before the response)."""
        events = []
        try:
            lines = self.audit_log.read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if user is None or (event.get("user") or {}).get("username") == user:
                events.append(event)
        return events


__all__ = ["KubeAPIServer", "KAS_BIN", "KUBE_CACHE", "K8S_VERSION", "binaries_built", "go_binary", "in_ci"]
