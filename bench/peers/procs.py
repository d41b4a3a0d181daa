"""Server processes for the benchmark: each in its own process group, waited for, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``check`` until it is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


class ServerProcess:
    """A command started in a new session (its own process group), its output in ``log``."""

    def __init__(self, name: str, cmd: list[str], *, cwd: Path, env: dict, log: Path):
        self.name, self.cmd, self.cwd, self.env, self.log = name, cmd, cwd, env, log
        self.proc: subprocess.Popen | None = None

    def start(self, ready_url: str, *, timeout: float = 120) -> ServerProcess:
        """Start, then wait until ``GET ready_url`` answers 200."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return httpx.get(ready_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout=timeout, what=self.name, interval=0.3)
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 15) -> None:
        """SIGTERM the whole process group, SIGKILL whatever is left after ``grace`` seconds."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if self._group_gone(pgid, wait):
                break
        self.proc.poll()

    def _group_gone(self, pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the leader so the group can empty
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False
