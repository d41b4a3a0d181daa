"""Start and stop a real ``kubepredict serve`` process for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """``kubepredict serve`` on a free loopback port with its own data folder and environment."""

    def __init__(self, data_dir: Path, env: dict | None = None, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "KUBEPREDICT_DISPATCH_INTERVAL_SECONDS": "0.2", **(env or {})}
        self.log_path = self.data_dir / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60, *, healthy: bool = True) -> GatewayProcess:
        """Start and wait until ``/healthz`` answers 200 (or, with ``healthy=False``, answers at all)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kubepredict.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status = httpx.get(self.url + "/healthz", timeout=2).status_code
                if status == 200 or not healthy:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not healthy after {timeout} s:\n{self.log_tail()}")

    def settle(self, quiet: float = 0.5, timeout: float = 60) -> float:
        """Wait until the gateway and its child processes have used no CPU for ``quiet`` seconds: its
        start-up work (the fork server importing scikit-learn and pandas for the workers) is done.
        Returns the seconds waited. For benchmarks, so a figure is not the start-up's CPU competing."""
        assert self.proc is not None
        t0 = last_change = time.monotonic()
        last = -1
        while time.monotonic() - t0 < timeout:
            used = _cpu_ticks(self.proc.pid)
            if used != last:
                last, last_change = used, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                break
            time.sleep(0.1)
        return time.monotonic() - t0

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _cpu_ticks(pid: int) -> int:
    """CPU ticks used by ``pid`` and its child processes (``/proc``; 0 where there is none)."""
    total = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    for p in [str(pid), *children]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total
