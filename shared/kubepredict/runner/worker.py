"""The worker entry point (``kubepredict worker JOB_ID``): the same in a local process and a Kubernetes pod."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from ..errors import JobCancelled, KubepredictError
from .jobs import run_predict, run_train

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Touches the job's heartbeat; when the job is no longer ours (cancelled), ends this process."""

    def __init__(self, catalog, job_id: str, attempt: int, interval: float):
        super().__init__(name="heartbeat", daemon=True)
        self.catalog, self.job_id, self.attempt, self.interval = catalog, job_id, attempt, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if not self.catalog.heartbeat(self.job_id, self.attempt):
                    if self.stopped.is_set():
                        return
                    logger.warning("job %s is no longer running here (cancelled?); stopping", self.job_id)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            except Exception:  # noqa: BLE001 - a missed beat is fine; the timeout is generous
                logger.warning("heartbeat for job %s failed", self.job_id, exc_info=True)


def run_worker(svc, job_id: str, attempt: int | None = None) -> int:
    """Run one job to an outcome recorded in the catalogue. Returns the process exit code."""
    catalog = svc.catalog
    me = f"{socket.gethostname()}:{os.getpid()}"
    if attempt is None:
        row = catalog.claim(job_id, worker=me)
        if row is None:
            logger.error("job %s is not queued; nothing to do", job_id)
            return 3
    else:
        row = catalog.get_job_row(job_id)
        if row.status != "running" or row.attempt != attempt:
            logger.error("job %s attempt %s is not ours to run (status %s, attempt %s)", job_id, attempt,
                         row.status, row.attempt)
            return 3
        catalog.set_worker(job_id, attempt, me)
    attempt = row.attempt
    signal.signal(signal.SIGTERM, _raise_cancelled)
    beat = Heartbeat(catalog, job_id, attempt, svc.settings.heartbeat_seconds)
    beat.start()
    started = time.perf_counter()
    try:
        (run_train if row.kind == "train" else run_predict)(svc, row)
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
        catalog.fail(job_id, attempt, "out_of_memory", "the job ran out of memory; use a smaller dataset or more memory")
        return 1
    except Exception as exc:  # noqa: BLE001 - recorded for the user, logged with traceback for us
        logger.exception("job %s crashed", job_id)
        catalog.fail(job_id, attempt, "job_error", f"{type(exc).__name__}: {exc}"[:2000])
        return 0
    finally:
        beat.stopped.set()


def _raise_cancelled(signum, frame):
    raise JobCancelled("terminated")
