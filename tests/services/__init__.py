"""Real backing services for the integration tests.

Each module starts one service on 127.0.0.1 and free high ports, keeps its data
in a temporary directory removed at ``stop()``, and captures the service log to
a file whose tail is put in the exception when start-up fails:

- ``postgres.PostgresServer``    PostgreSQL 15 throwaway cluster (Debian package)
- ``s3.S3ProxyServer``           S3Proxy 4.0.0 (jar, SigV2/V4 checked); ``s3.MotoS3Server`` fallback
- ``kafka.KafkaBroker``          Kafka 4.1.1 single KRaft node (Maven jars)
- ``prometheus.PrometheusServer`` Prometheus + Pushgateway (Debian packages)

Binaries and jars come from ``scripts/setup-services.sh`` (``make setup-services``).
A missing binary/jar raises ``ServiceUnavailable``; anything else going wrong at
start-up raises ``ServiceStartError``. ``tests.services.fixtures`` turns these
into pytest fixtures (skip when unavailable, fail under ``CI=true``).

Every started service is also registered with ``atexit`` so that nothing is
left running even if the test session dies without running its finalizers.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: where scripts/setup-services.sh puts the jars; override with KUBEPREDICT_JARS_DIR
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubepredict"  # outside any clone
JARS_DIR = Path(os.environ.get("KUBEPREDICT_JARS_DIR", CACHE_ROOT / "jars"))
SETUP_HINT = "run `make setup-services` (scripts/setup-services.sh)"
LOOPBACK = "127.0.0.1"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


class ServiceUnavailable(RuntimeError):
    """A binary, jar or package the service needs is not installed."""


class ServiceStartError(RuntimeError):
    """The service was there but did not come up (message has the log tail)."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], object],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
    alive: Callable[[], bool] | None = None,
):
    """Poll ``check()`` until it returns something truthy; return that value.

    ``alive()`` returning False (the process died) stops waiting early.
    Exceptions raised by ``check`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - "not ready yet"
            last_exc = exc
        if alive is not None and not alive():
            raise ServiceStartError(f"process exited while waiting for {what}")
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


_BIND_RE = re.compile(r"address already in use|could not bind|bind: address", re.I)
_ERROR_RE = re.compile(r"\b(ERROR|FATAL|PANIC|SEVERE)\b|level=(error|fatal)|Exception: |Error: |Caused by: ")


def error_lines(path: Path, limit: int = 12) -> str:
    """The first lines of a log that look like errors (stack frames left out)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    hits = [ln for ln in lines if _ERROR_RE.search(ln) and not ln.lstrip().startswith("at ")]
    return "\n".join(hits[:limit])


def require_executable(path_or_name: str, how: str) -> str:
    found = shutil.which(path_or_name)
    if not found:
        raise ServiceUnavailable(f"`{path_or_name}` not found: {how}")
    return found


def require_java() -> str:
    return require_executable("java", "install Java 17+ (apt-get install openjdk-17-jre-headless)")


def unique_name(prefix: str = "t", length: int = 10) -> str:
    """Lower-case name safe for buckets, databases and topics."""
    import uuid

    return f"{prefix}{uuid.uuid4().hex[:length]}"


def _listen_table() -> dict[str, str]:
    """socket inode -> "addr:port" for every listening TCP socket (from /proc/net)."""
    import ipaddress

    table: dict[str, str] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != "0A":  # 0A = LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            # /proc stores the address as host-order 32-bit words
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addr = ipaddress.ip_address(raw)
            if addr.version == 6 and addr.ipv4_mapped:
                addr = addr.ipv4_mapped
            table[f[9]] = f"{addr}:{int(hexport, 16)}"
    return table


def listening_addresses(pids) -> set[str]:
    """ "addr:port" of every TCP socket the given processes listen on (Linux only)."""
    table = _listen_table()
    found: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inode = link[8:-1]
                if inode in table:
                    found.add(table[inode])
    return found


def _parent_death_signal() -> None:  # runs in the child between fork and exec
    """Linux: SIGTERM the child if the test process dies without cleaning up (even SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not on Linux
        pass


def install_sigterm_handler() -> None:
    """Turn SIGTERM (e.g. a CI timeout) into KeyboardInterrupt so pytest tears down
    its fixtures and atexit stops the services. Only if nobody set a handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _on_sigterm(signum, frame):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, _on_sigterm)


_LIVE: weakref.WeakSet[Service] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:  # pragma: no cover - safety net
    with _LIVE_LOCK:
        services = list(_LIVE)
    for svc in services:
        with contextlib.suppress(Exception):
            svc.stop()


class Service:
    """Base: temp dir, log file, child processes, context manager, atexit."""

    name = "service"
    start_timeout = 60.0
    #: attributes holding ports; those left None are picked with free_port()
    port_attrs: tuple[str, ...] = ("port",)

    def __init__(self) -> None:
        self.tmpdir: Path | None = None
        self.log_path: Path | None = None
        self._procs: list[subprocess.Popen] = []
        self._logs: list = []
        self.started = False
        self.start_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------
    def check_available(self) -> None:
        """Raise ServiceUnavailable when a binary/jar is missing."""

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        """Service-specific graceful stop (processes are killed afterwards anyway)."""

    def start(self):
        if self.started:
            return self
        self.check_available()
        install_sigterm_handler()
        t0 = time.monotonic()
        # ports picked by us (None) may be taken by someone else between
        # free_port() and the bind: then retry with fresh ports
        auto_ports = [a for a in self.port_attrs if getattr(self, a, None) is None]
        for attempt in range(3):
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"kp-svc-{self.name}-"))
            self.log_path = self.tmpdir / f"{self.name}.log"
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._start()
                break
            except ServiceUnavailable:
                self.stop()
                raise
            except BaseException as exc:
                msg = self._failure_message(exc)
                bind_race = auto_ports and attempt < 2 and _BIND_RE.search(msg)
                self.stop()
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                if not bind_race:
                    raise ServiceStartError(msg) from exc
                for attr in auto_ports:
                    setattr(self, attr, None)
        self.start_seconds = time.monotonic() - t0
        self.started = True
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._stop()
        for proc in reversed(self._procs):
            self._kill(proc)
        self._procs.clear()
        for fh in self._logs:
            with contextlib.suppress(Exception):
                fh.close()
        self._logs.clear()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        self.started = False
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------
    def _failure_message(self, exc: BaseException) -> str:
        logs = []
        for path in self._log_files():
            errors = error_lines(path)
            if errors:
                logs.append(f"--- first error lines of {path} ---\n{errors}")
            logs.append(f"--- tail of {path} ---\n{tail(path)}")
        return f"{self.name} failed to start: {exc!r}\n" + "\n".join(logs)

    def _log_files(self) -> list[Path]:
        return [p for p in [self.log_path] if p is not None]

    def _spawn(self, argv: list[str], log_path: Path | None = None, **kw) -> subprocess.Popen:
        """Start a child in its own process group, stdout+stderr to a log file."""
        log_path = log_path or self.log_path
        fh = open(log_path, "ab")  # noqa: SIM115 - kept in self._logs, closed when the service stops
        self._logs.append(fh)
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_parent_death_signal,
            **kw,
        )
        self._procs.append(proc)
        return proc

    @staticmethod
    def _kill(proc: subprocess.Popen, grace: float = 10.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def pids(self) -> list[int]:
        """Processes of this service (for checks such as listening_addresses)."""
        return [p.pid for p in self._procs if p.poll() is None]

    def listen_addresses(self) -> set[str]:
        """Where this service's processes listen ("127.0.0.1:PORT", ...)."""
        return listening_addresses(self.pids())

    def _alive(self, proc: subprocess.Popen) -> Callable[[], bool]:
        return lambda: proc.poll() is None


__all__ = [
    "JARS_DIR",
    "LOOPBACK",
    "REPO_ROOT",
    "SETUP_HINT",
    "Service",
    "ServiceStartError",
    "ServiceUnavailable",
    "free_port",
    "in_ci",
    "listening_addresses",
    "port_open",
    "require_executable",
    "require_java",
    "tail",
    "unique_name",
    "wait_until",
]
