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


PRELOAD = ["kubepredict.cli", "kubepredict.runner.worker", "kubepredict.ml", "sklearn.ensemble", "sklearn.linear_model",
           "sklearn.svm", "sklearn.neighbors", "sklearn.neural_network", "sklearn.cluster", "sklearn.mixture",
           "pyarrow.parquet"]


def _forked_worker(argv: list[str], env: dict) -> None:
    """Child of the preloaded fork server: run the very same ``kubepredict worker`` entry point."""
    os.environ.update(env)
    os.setsid()
    from kubepredict.cli import main

    main(argv, prog_name="kubepredict")


class _ForkedProcess:
    """Gives a multiprocessing.Process the few verbs of subprocess.Popen the runner uses."""

    def __init__(self, proc):
        self._p = proc
        self.pid = proc.pid

    def poll(self):
        return None if self._p.is_alive() else self._p.exitcode

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def kill(self):
        self._p.kill()

    def terminate(self):
        self._p.terminate()

    def wait(self, timeout=None):
        self._p.join(timeout)
        if self._p.is_alive():
            raise subprocess.TimeoutExpired("worker", timeout)
        return self._p.exitcode


class LocalProcessRunner(JobRunner):
    """Starts one worker process per job and reports workers that die without an outcome.

    ``start_method="forkserver"`` (default) forks workers from a server process that has imported
    scikit-learn and pandas once, so a job starts in milliseconds instead of seconds; ``"exec"``
    runs ``python -m kubepredict.cli worker …`` as a fresh interpreter. Both run the same entry point.
    """

    def __init__(self, settings, *, env: dict | None = None, python: str | None = None,
                 start_method: str | None = None):
        self.settings = settings
        self.python = python or sys.executable
        self.start_method = start_method or os.environ.get("KUBEPREDICT_WORKER_START", "forkserver")
        self.job_env = {**(env or {}), "KUBEPREDICT_DATABASE_URL": settings.database_url,
                        "KUBEPREDICT_STORAGE_URL": settings.storage_url, "PYTHONUNBUFFERED": "1"}
        self.env = {**os.environ, **self.job_env}
        # (job_id, shard or None) -> (process, attempt, time SIGTERM was sent or 0)
        self._procs: dict[tuple[str, int | None], tuple[object, int, float]] = {}
        self._lock = threading.Lock()
        self._ctx = None
        if self.start_method == "forkserver":
            import multiprocessing

            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(PRELOAD)

    def start(self) -> None:
        """Start the fork server now, in the background: its imports take seconds, which the first job
        would otherwise wait for."""
        if self._ctx is not None:
            from multiprocessing import forkserver

            threading.Thread(target=forkserver.ensure_running, name="forkserver-start", daemon=True).start()

    def _launch(self, spec: JobSpec):
        argv = ["worker", spec.job_id, "--attempt", str(spec.attempt)]
        if spec.shard is not None:
            argv += ["--shard", str(spec.shard)]
        if self._ctx is not None:
            proc = self._ctx.Process(target=_forked_worker, args=(argv, self.job_env), name=f"worker-{spec.job_id}")
            proc.start()
            return _ForkedProcess(proc)
        return subprocess.Popen([self.python, "-m", "kubepredict.cli", *argv], env=self.env,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def submit(self, spec: JobSpec) -> None:
        try:
            proc = self._launch(spec)
        except OSError as exc:
            raise BackendUnavailable(f"could not start a worker process: {exc}") from exc
        logger.info("job %s%s attempt %s: started worker pid %s", spec.job_id,
                    "" if spec.shard is None else f" shard {spec.shard}", spec.attempt, proc.pid)
        with self._lock:
            self._procs[(spec.job_id, spec.shard)] = (proc, spec.attempt, 0.0)

    def cancel(self, job_id: str) -> None:
        """Stop the job's worker, or every shard worker of a sharded job."""
        with self._lock:
            keys = [k for k in self._procs if k[0] == job_id]
        for key in keys:
            self._terminate(key)

    def cancel_shard(self, job_id: str, shard: int) -> None:
        self._terminate((job_id, shard))

    def _terminate(self, key) -> None:
        with self._lock:
            entry = self._procs.get(key)
            if entry is None or entry[2]:
                return
            self._procs[key] = (entry[0], entry[1], time.monotonic())
        try:
            entry[0].send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def poll(self) -> None:
        with self._lock:
            items = list(self._procs.items())
        for (job_id, shard), (proc, attempt, term_at) in items:
            code = proc.poll()
            if code is None:
                if term_at and time.monotonic() - term_at > TERM_GRACE_SECONDS:
                    proc.kill()
                continue
            with self._lock:
                self._procs.pop((job_id, shard), None)
            if self.on_lost is not None:
                # The catalogue ignores this when the worker recorded its outcome (the usual case).
                if shard is None:
                    self.on_lost(job_id, attempt, "worker_lost", _describe_exit(code))
                else:
                    self.on_lost(job_id, attempt, "worker_lost", _describe_exit(code), shard)

    def running(self) -> int:
        with self._lock:
            return len(self._procs)

    def running_ids(self) -> list[str]:
        with self._lock:
            return sorted({job_id for job_id, _shard in self._procs})

    def running_shards(self) -> list[tuple[str, int, int]]:
        with self._lock:
            return [(job_id, shard, entry[1]) for (job_id, shard), entry in self._procs.items() if shard is not None]

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
