"""Local runner: each job in its own ``kubepredict worker JOB_ID`` process on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from ..errors import BackendUnavailable
from .base import JobRunner, JobSpec

logger = logging.getLogger(__name__)
TERM_GRACE_SECONDS = 5.0


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"worker process was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker process was killed by signal {-code}"
    return f"worker process exited with code {code} without recording an outcome"


class LocalProcessRunner(JobRunner):
    """Starts one worker process per job and reports workers that die without an outcome."""

    def __init__(self, settings, *, env: dict | None = None, python: str | None = None):
        self.settings = settings
        self.python = python or sys.executable
        self.env = {**os.environ, **(env or {}), "KUBEPREDICT_DATABASE_URL": settings.database_url,
                    "KUBEPREDICT_STORAGE_URL": settings.storage_url, "PYTHONUNBUFFERED": "1"}
        self._procs: dict[str, tuple[subprocess.Popen, int, float]] = {}
        self._lock = threading.Lock()

    def submit(self, spec: JobSpec) -> None:
        cmd = [self.python, "-m", "kubepredict.cli", "worker", spec.job_id, "--attempt", str(spec.attempt)]
        try:
            proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise BackendUnavailable(f"could not start a worker process: {exc}") from exc
        logger.info("job %s attempt %s: started worker pid %s", spec.job_id, spec.attempt, proc.pid)
        with self._lock:
            self._procs[spec.job_id] = (proc, spec.attempt, 0.0)

    def pid(self, job_id: str) -> int | None:
        with self._lock:
            entry = self._procs.get(job_id)
        return entry[0].pid if entry else None

    def cancel(self, job_id: str) -> None:
        with self._lock:
            entry = self._procs.get(job_id)
            if entry is None or entry[2]:
                return
            self._procs[job_id] = (entry[0], entry[1], time.monotonic())
        try:
            entry[0].send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def poll(self) -> None:
        with self._lock:
            items = list(self._procs.items())
        for job_id, (proc, attempt, term_at) in items:
            code = proc.poll()
            if code is None:
                if term_at and time.monotonic() - term_at > TERM_GRACE_SECONDS:
                    proc.kill()
                continue
            with self._lock:
                self._procs.pop(job_id, None)
            if self.on_lost is not None:
                # The catalogue ignores this when the worker recorded its outcome (the usual case).
                self.on_lost(job_id, attempt, "worker_lost", _describe_exit(code))

    def running(self) -> int:
        with self._lock:
            return len(self._procs)

    def running_ids(self) -> list[str]:
        with self._lock:
            return list(self._procs)

    def close(self) -> None:
        with self._lock:
            procs = [p for p, _, _ in self._procs.values()]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=TERM_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                p.kill()
