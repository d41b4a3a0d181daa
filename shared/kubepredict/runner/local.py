"""Local runner: each job in its own ``kubepredict worker JOB_ID`` process on this machine.

Each worker runs under its job's bounds (runner/limits.py): the kernel memory limit and thread caps it
sets itself from its environment, and this runner's watch of its resident memory on every ``poll``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from ..errors import BackendUnavailable
from . import warm_models
from .base import JobRunner, JobSpec
from .limits import MEMORY_LIMIT_CODE, local_limits, memory_message, tree_rss_bytes

logger = logging.getLogger(__name__)
TERM_GRACE_SECONDS = 5.0


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"worker process was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker process was killed by signal {-code}"
    return f"worker process exited with code {code} without recording an outcome"


PRELOAD = [
    "kubepredict.runner.worker",
    "kubepredict.bootstrap",
    "kubepredict.ml",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.svm",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.cluster",
    "sklearn.mixture",
    "pyarrow.parquet",
    "threadpoolctl",
    "setproctitle",
    # What every job imported for itself before (found by diffing sys.modules across a job): the
    # catalogue's dialects and drivers (a PostgreSQL engine took 175 ms to create in each worker, SQLite
    # 11 ms), pyarrow's pandas conversion, and scikit-learn's dataframe layer. An iris train job went from
    # 0.24 s to 0.13 s in its worker, a predict job from 0.20 s to 0.07 s. Not ``pyarrow.dataset``
    # (cheap): preloaded, a worker over its memory limit died instead of failing its job with the reason
    # (tests/e2e/test_job_bounds.py).
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
    "sqlite3",
    "pyarrow.pandas_compat",
    "kubepredict.logs",
    "narwhals._pandas_like.namespace",
    # The S3 client a job on an object store creates (its import took each such worker 0.09 s).
    "boto3",
    "boto3.s3.transfer",
    "botocore.client",
    # multiprocessing runs the gateway's main module again in every child (``-m kubepredict.cli``, or the
    # ``kubepredict`` script that imports it): with its imports (click) done here, a job's worker starts
    # ~6 ms sooner. And the few modules each job still imported for itself (storage, the model cache, a
    # shard's body, the zip codec skops reads with): ~3 ms more.
    "kubepredict.cli",
    "kubepredict.storage.file",
    "kubepredict.storage.s3",
    "kubepredict.services.model_cache",
    "kubepredict.runner.shards",
    "encodings.cp437",
    # Last, with everything imported: from here on the fork server loads the model of each worker it
    # forks (runner/warm_models.py).
    "kubepredict.runner.warm_fork",
]


#: Set for worker processes (the fork server is started with it): OpenBLAS's idle threads spin for
#: 2^28 cycles (~0.1 s here) before they sleep, and a forked worker's threads start spinning at once;
#: with 2^4 they sleep at once. Two shards on two cores lost that time to each other's spinning threads
#: (perf: blas_thread_server, ~0.13 s of CPU per 2-shard job, all at the workers' start).
WORKER_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}

#: A process has one fork server, whatever the runners: a model's announcement and the start of the
#: worker it is for go together (runner/warm_models.py).
_STARTS = threading.Lock()


def _forked_worker(job_id: str, attempt: int, shard: int | None, env: dict) -> None:
    """Child of the preloaded fork server: run the very same worker entry point as ``kubepredict worker``."""
    os.environ.update(env)
    os.setsid()
    from kubepredict.runner.worker import worker_main

    sys.exit(worker_main(job_id, attempt, shard))


class _Process(Protocol):
    """What the runner uses of a worker process: subprocess.Popen's verbs (``_ForkedProcess`` has them too)."""

    pid: int

    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...
    def terminate(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int | None: ...


@dataclass
class _Worker:
    proc: _Process
    attempt: int
    memory_bytes: int
    term_at: float = 0.0  # when SIGTERM was sent (0: not yet)


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

    def __init__(
        self, settings, *, env: dict | None = None, python: str | None = None, start_method: str | None = None
    ):
        self.settings = settings
        self.python = python or sys.executable
        self.start_method = start_method or os.environ.get("KUBEPREDICT_WORKER_START", "forkserver")
        self.job_env = {
            **WORKER_ENV,
            **(env or {}),
            "KUBEPREDICT_DATABASE_URL": settings.database_url,
            "KUBEPREDICT_STORAGE_URL": settings.storage_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.env = {**os.environ, **self.job_env}
        self.deadline_seconds = settings.job_deadline_seconds  # enforced by the dispatcher
        self._procs: dict[tuple[str, int | None], _Worker] = {}  # (job_id, shard or None) -> its worker
        self._lock = threading.Lock()
        self._ctx = None
        if self.start_method == "forkserver":
            self.warms_models = settings.warm_model_max_bytes > 0
            warm_models.address()  # in the environment the fork server starts with
            import multiprocessing

            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(PRELOAD)
            for name, value in WORKER_ENV.items():  # the fork server is spawned with this process's environment
                os.environ.setdefault(name, value)

    def start(self) -> None:
        """Start the fork server now, in the background: its imports take seconds, which the first job
        would otherwise wait for."""
        if self._ctx is not None:
            from multiprocessing import forkserver

            threading.Thread(target=forkserver.ensure_running, name="forkserver-start", daemon=True).start()

    def _launch(self, spec: JobSpec, bounds: dict) -> _Process:
        if self._ctx is not None:
            proc = self._ctx.Process(
                target=_forked_worker,
                args=(spec.job_id, spec.attempt, spec.shard, {**self.job_env, **bounds}),
                name=f"worker-{spec.job_id}",
            )
            proc.start()
            return _ForkedProcess(proc)
        argv = ["worker", spec.job_id, "--attempt", str(spec.attempt)]
        if spec.shard is not None:
            argv += ["--shard", str(spec.shard)]
        return subprocess.Popen(
            [self.python, "-m", "kubepredict.cli", *argv],
            env={**self.env, **bounds},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def submit(self, spec: JobSpec) -> None:
        bounds = local_limits(self.settings, spec.resources, share=spec.share)
        try:
            with _STARTS:
                if self.warms_models:
                    warm_models.announce(spec.model, self.job_env, self.settings.warm_model_max_bytes)
                proc = self._launch(spec, bounds.env())
        except OSError as exc:
            raise BackendUnavailable(f"could not start a worker process: {exc}") from exc
        logger.info(
            "job %s%s attempt %s: started worker pid %s (memory limit %s bytes, %s cpus)",
            spec.job_id,
            "" if spec.shard is None else f" shard {spec.shard}",
            spec.attempt,
            proc.pid,
            bounds.memory_bytes,
            bounds.cpus,
        )
        with self._lock:
            self._procs[(spec.job_id, spec.shard)] = _Worker(proc, spec.attempt, bounds.memory_bytes)

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
            if entry is None or entry.term_at:
                return
            entry.term_at = time.monotonic()
        try:
            entry.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _over_memory(self, job_id: str, shard: int | None, worker: _Worker) -> bool:
        """Fail and kill a worker whose resident memory (with its children) is above its limit."""
        used = tree_rss_bytes(worker.proc.pid)
        if used <= worker.memory_bytes:
            return False
        logger.warning(
            "job %s%s: worker pid %s uses %s bytes, above its limit of %s; killing it",
            job_id,
            "" if shard is None else f" shard {shard}",
            worker.proc.pid,
            used,
            worker.memory_bytes,
        )
        if self.on_failed is not None:  # recorded first: the worker's death is then no loss to retry
            args = (job_id, worker.attempt, MEMORY_LIMIT_CODE, memory_message(worker.memory_bytes))
            self.on_failed(*args) if shard is None else self.on_failed(*args, shard)
        worker.term_at = time.monotonic()
        try:
            os.killpg(worker.proc.pid, signal.SIGKILL)  # its own session: the worker and its children
        except ProcessLookupError:
            pass
        return True

    def poll(self) -> None:
        with self._lock:
            items = list(self._procs.items())
        for (job_id, shard), worker in items:
            proc = worker.proc
            code = proc.poll()
            if code is None:
                if worker.term_at:
                    if time.monotonic() - worker.term_at > TERM_GRACE_SECONDS:
                        proc.kill()
                else:
                    self._over_memory(job_id, shard, worker)
                continue
            with self._lock:
                self._procs.pop((job_id, shard), None)
            if self.on_lost is not None:
                # The catalogue ignores this when the worker recorded its outcome (the usual case).
                if shard is None:
                    self.on_lost(job_id, worker.attempt, "worker_lost", _describe_exit(code))
                else:
                    self.on_lost(job_id, worker.attempt, "worker_lost", _describe_exit(code), shard)

    def running(self) -> int:
        with self._lock:
            return len(self._procs)

    def running_ids(self) -> list[str]:
        with self._lock:
            return sorted({job_id for job_id, _shard in self._procs})

    def running_shards(self) -> list[tuple[str, int, int]]:
        with self._lock:
            return [(job_id, shard, w.attempt) for (job_id, shard), w in self._procs.items() if shard is not None]

    def close(self) -> None:
        with self._lock:
            procs = [w.proc for w in self._procs.values()]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=TERM_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                p.kill()
