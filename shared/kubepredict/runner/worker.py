"""The worker entry point (``kubepredict worker JOB_ID``): the same in a local process and a Kubernetes pod."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from ..errors import JobCancelled, KubepredictError
from ..services.job_bodies import run_predict, run_train
from ..services.prediction import seed_pipeline
from . import limits as job_limits
from . import warm_models

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Touches the job's (or shard's) heartbeat; when it is no longer ours (cancelled), ends this process."""

    def __init__(self, catalog, job_id: str, attempt: int, interval: float, shard: int | None = None):
        super().__init__(name="heartbeat", daemon=True)
        self.catalog, self.job_id, self.attempt, self.interval = catalog, job_id, attempt, interval
        self.shard = shard
        self.stopped = threading.Event()

    def _beat(self) -> bool:
        if self.shard is None:
            return self.catalog.heartbeat(self.job_id, self.attempt)
        return self.catalog.shard_heartbeat(self.job_id, self.shard, self.attempt)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if not self._beat():
                    if self.stopped.is_set():
                        return
                    logger.warning("job %s is no longer running here (cancelled?); stopping", self.job_id)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            except Exception:  # a missed beat is fine; the timeout is generous
                logger.warning("heartbeat for job %s failed", self.job_id, exc_info=True)


def worker_main(job_id: str, attempt: int | None = None, shard: int | None = None, *, sharded: bool = False) -> int:
    """The worker process: ``kubepredict worker JOB_ID`` and the local runner's forked workers both run this.

    Applies the job's bounds handed over by the local runner (runner/limits.py), names the process after
    its job, and runs the job. Returns the process exit code.
    """
    from .. import arrow_memory, logs
    from ..bootstrap import bootstrap
    from ..config import Settings

    logs.configure()
    if sharded:
        shard, attempt = shard_from_env()
    set_title(job_id, shard=shard)
    bounds = job_limits.JobLimits.from_env()
    if bounds is not None:
        job_limits.apply(bounds)
    arrow_memory.use_jemalloc()
    svc = bootstrap(Settings.from_env(), create_schema=False)
    warm = warm_models.inherited()
    if warm is not None:  # loaded by the fork server for this job (runner/warm_models.py)
        seed_pipeline(svc, warm.model_id, warm.sha256, warm.pipeline)
        logger.info("job %s: model %s inherited from the fork server", job_id, warm.model_id)
    return run_worker(
        svc,
        job_id,
        attempt,
        shard,
        cpus=bounds.cpus if bounds else None,
        on_claimed=lambda kind: set_title(job_id, kind, shard=shard),
    )


def set_title(job_id: str, kind: str | None = None, shard: int | None = None) -> None:
    """``ps`` shows ``kubepredict worker train job_…`` (forked workers would show the fork server's command)."""
    from setproctitle import setproctitle

    setproctitle(
        " ".join(
            [
                "kubepredict worker",
                *([kind] if kind else []),
                job_id,
                *([f"shard {shard}"] if shard is not None else []),
            ]
        )
    )


def _memory_failure() -> tuple[str, str]:
    """The error code and reason of a MemoryError, after giving the process room to record them."""
    job_limits.relax_memory()
    bounds = job_limits.JobLimits.from_env()
    if bounds is None:  # no limit of ours (a Kubernetes pod has its container's): the machine ran out
        return "out_of_memory", "the job ran out of memory; use a smaller dataset or more memory"
    return job_limits.MEMORY_LIMIT_CODE, job_limits.memory_message(bounds.memory_bytes)


def run_worker(
    svc,
    job_id: str,
    attempt: int | None = None,
    shard: int | None = None,
    *,
    cpus: int | None = None,
    on_claimed: Callable[[str], None] | None = None,
) -> int:
    """Run one job (or one shard of a sharded predict job) to an outcome recorded in the catalogue.

    ``cpus``: the job's CPU allowance, which bounds a training job's ``n_jobs``. ``on_claimed(kind)`` runs
    once the job is ours (the worker process names itself after it; callers in tests leave their own
    process alone). Returns the process exit code.
    """
    catalog = svc.catalog
    me = f"{socket.gethostname()}:{os.getpid()}"
    if shard is not None:
        return _run_shard(svc, job_id, shard, attempt, me, cpus, on_claimed)
    if attempt is None:
        row = catalog.claim(job_id, worker=me)
        if row is None:
            logger.error("job %s is not queued; nothing to do", job_id)
            return 3
    else:
        row = catalog.get_job_row(job_id)
        if row.status != "running" or row.attempt != attempt:
            logger.error(
                "job %s attempt %s is not ours to run (status %s, attempt %s)", job_id, attempt, row.status, row.attempt
            )
            return 3
        catalog.set_worker(job_id, attempt, me)
    attempt = row.attempt
    if on_claimed is not None:
        on_claimed(row.kind)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    beat = Heartbeat(catalog, job_id, attempt, svc.settings.heartbeat_seconds)
    beat.start()
    started = time.perf_counter()
    out_of_memory = False
    try:
        if row.kind == "train":
            run_train(svc, row, cpus=cpus)
        else:
            run_predict(svc, row, cpus=cpus)
        logger.info("job %s succeeded in %.2f s", job_id, time.perf_counter() - started)
        return 0
    except JobCancelled:
        # Cancelled by the user (no-op below), or terminated by the platform (requeued or failed).
        catalog.lost(job_id, attempt, "worker_terminated", "the worker was terminated before it finished")
        logger.info("job %s stopped before finishing", job_id)
        return 0
    except KubepredictError as exc:
        logger.warning("job %s failed: %s", job_id, exc.message)
        catalog.fail(job_id, attempt, exc.code, exc.message)
        return 0
    except MemoryError:
        out_of_memory = True  # recorded below, once the frames of the failed allocation are released
    except Exception as exc:  # recorded for the user, logged with traceback for us
        logger.exception("job %s crashed", job_id)
        catalog.fail(job_id, attempt, "job_error", f"{type(exc).__name__}: {exc}"[:2000])
        return 0
    finally:
        beat.stopped.set()
    if out_of_memory:
        logger.warning("job %s ran out of memory", job_id)
        catalog.fail(job_id, attempt, *_memory_failure())
    return 1


def _raise_cancelled(signum, frame):
    raise JobCancelled("terminated")


def shard_from_env(environ=None) -> tuple[int, int]:
    """A Kubernetes Indexed Job pod's shard (``JOB_COMPLETION_INDEX``) and attempt (index failures + 1)."""
    environ = os.environ if environ is None else environ
    try:
        index = int(environ["JOB_COMPLETION_INDEX"])
    except (KeyError, ValueError) as exc:
        raise SystemExit("--sharded needs JOB_COMPLETION_INDEX (set by an Indexed Job)") from exc
    failures = environ.get(SHARD_FAILURES_ENV) or "0"
    return index, int(failures) + 1 if failures.isdigit() else 1


#: Set from the pod annotation batch.kubernetes.io/job-index-failure-count (downward API), see k8s_manifest.
SHARD_FAILURES_ENV = "KUBEPREDICT_SHARD_FAILURES"  # == k8s_manifest.SHARD_FAILURES_ENV


def _run_shard(
    svc,
    job_id: str,
    shard: int,
    attempt: int | None,
    me: str,
    cpus: int | None,
    on_claimed: Callable[[str], None] | None,
) -> int:
    """Score one shard. ``attempt`` None: the worker claims the shard itself for ``attempt`` (a pod)."""
    from .shards import run_predict_shard

    catalog = svc.catalog
    if attempt is None:
        attempt = 1
    row = catalog.get_shard_row(job_id, shard)
    if row is None:
        logger.error("job %s has no shard %s", job_id, shard)
        return 3
    if row.status == "running" and row.attempt == attempt:
        catalog.set_shard_worker(job_id, shard, attempt, me)  # claimed for us by the dispatcher
    elif catalog.claim_shard_attempt(job_id, shard, attempt, worker=me) is None:
        logger.error(
            "job %s shard %s attempt %s is not ours to run (status %s, attempt %s)",
            job_id,
            shard,
            attempt,
            row.status,
            row.attempt,
        )
        return 3
    row = catalog.get_shard_row(job_id, shard)
    job = catalog.get_job_row(job_id)
    if on_claimed is not None:
        on_claimed(job.kind)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    beat = Heartbeat(catalog, job_id, attempt, svc.settings.heartbeat_seconds, shard=shard)
    beat.start()
    started = time.perf_counter()
    out_of_memory = False
    try:
        run_predict_shard(svc, job, row, cpus=cpus)
        logger.info("job %s shard %s succeeded in %.2f s", job_id, shard, time.perf_counter() - started)
        return 0
    except JobCancelled:
        catalog.shard_lost(job_id, shard, attempt, "worker_terminated", "the worker was terminated before it finished")
        logger.info("job %s shard %s stopped before finishing", job_id, shard)
        return 0
    except KubepredictError as exc:
        logger.warning("job %s shard %s failed: %s", job_id, shard, exc.message)
        catalog.fail_shard(job_id, shard, attempt, exc.code, exc.message)
        return 0
    except MemoryError:
        out_of_memory = True  # recorded below, once the frames of the failed allocation are released
    except Exception as exc:  # recorded for the user, logged with traceback for us
        logger.exception("job %s shard %s crashed", job_id, shard)
        catalog.fail_shard(job_id, shard, attempt, "job_error", f"{type(exc).__name__}: {exc}"[:2000])
        return 0
    finally:
        beat.stopped.set()
    if out_of_memory:
        logger.warning("job %s shard %s ran out of memory", job_id, shard)
        catalog.fail_shard(job_id, shard, attempt, *_memory_failure())
    return 1
