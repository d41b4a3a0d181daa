"""The dispatcher: claims queued jobs from the database and hands them to the runner.

It runs inside ``kubepredict serve`` (or alone as ``kubepredict dispatcher``), so a job queued by a
short-lived process (a Kubeless call, a scaled-away replica) still runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from ..errors import KubepredictError
from ..loops import BackgroundLoop
from .base import JobRunner, JobSpec
from .limits import DEADLINE_CODE, deadline_message

logger = logging.getLogger(__name__)


class Dispatcher(BackgroundLoop):
    thread_name = "dispatcher"

    def __init__(self, catalog, runner: JobRunner, settings):
        super().__init__()
        self.catalog, self.runner, self.settings = catalog, runner, settings
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._last_poll = float("-inf")
        runner.on_lost = self._lost
        runner.on_failed = self._failed

    def _lost(self, job_id: str, attempt: int, code: str, message: str, shard: int | None = None) -> None:
        if shard is None:
            self.catalog.lost(job_id, attempt, code, message)
        else:
            self.catalog.shard_lost(job_id, shard, attempt, code, message)

    def _failed(self, job_id: str, attempt: int, code: str, message: str, shard: int | None = None) -> None:
        """A bound was broken (memory, time): the job fails for good; a retry would break it again."""
        logger.warning(
            "job %s%s attempt %s failed: %s", job_id, "" if shard is None else f" shard {shard}", attempt, message
        )
        if shard is None:
            self.catalog.fail(job_id, attempt, code, message)
        else:
            self.catalog.fail_shard(job_id, shard, attempt, code, message)

    def _enforce_deadline(self) -> None:
        deadline = self.runner.deadline_seconds
        if not deadline:
            return
        for job_id, attempt in self.catalog.overdue_running(deadline):
            self._failed(job_id, attempt, DEADLINE_CODE, deadline_message(deadline))
        for job_id, shard, attempt in self.catalog.overdue_shards(deadline):
            self._failed(job_id, attempt, DEADLINE_CODE, deadline_message(deadline), shard=shard)

    def tick(self) -> int:
        """One round: reap dead or silent workers, stop cancelled ones, start queued jobs and shards.

        Returns the workers (or Kubernetes Jobs) started.
        """
        now = time.monotonic()
        if now - self._last_poll >= self.runner.poll_interval_seconds:
            self.runner.poll()
            self._last_poll = now
        timeout = self.settings.heartbeat_timeout_seconds
        for job_id, attempt in self.catalog.stale_running(timeout):
            self._lost(job_id, attempt, "heartbeat_timeout", f"no heartbeat for {timeout:.0f} s")
        for job_id, shard, attempt in self.catalog.stale_shards(timeout):
            self._lost(job_id, attempt, "heartbeat_timeout", f"no heartbeat for {timeout:.0f} s", shard=shard)
        self._enforce_deadline()  # before the check below, which then stops the workers of overdue jobs
        for job_id, (status, _attempt) in self.catalog.statuses(self.runner.running_ids()).items():
            # cancelled, failed, or requeued without this worker: stop it. A succeeded job's worker recorded
            # its result and is exiting: let it end (its Kubernetes Job and logs stay for their TTL).
            if status not in ("running", "succeeded"):
                self.runner.cancel(job_id)
        shards = self.runner.running_shards()
        states = self.catalog.shard_statuses([(j, k) for j, k, _a in shards])
        for job_id, shard, attempt in shards:
            status, current = states.get((job_id, shard), ("gone", 0))
            # A shard that succeeded in this attempt: its worker may be finishing the whole job (the last
            # shard's worker writes the job's summary) or exiting; a SIGTERM would cut that short.
            if current != attempt or status not in ("running", "succeeded"):
                self.runner.cancel_shard(job_id, shard)  # requeued, cancelled or failed without this worker
        for job_id in self.catalog.completed_sharded_jobs():  # the last shard's worker died before finishing it
            from .shards import finalize

            finalize(self.catalog, job_id)
        started = self._start_shards()
        free = self.settings.max_concurrent_jobs - self.runner.running()
        if free <= 0:
            return started
        for row in self.catalog.claim_next(free, worker=self.name):
            if row.shards and not self.runner.runs_shards_as_one_job:
                continue  # its shards are claimed one by one below
            spec = JobSpec(
                job_id=row.job_id,
                kind=row.kind,
                attempt=row.attempt,
                resources=row.resources,
                shards=row.shards or None,
                parallelism=(self.settings.shard_parallelism or None) if row.shards else None,
                retries=max(0, row.max_attempts - 1),
                model=self._model_of(row),
            )
            try:
                self.runner.submit(spec)
                # The silence that counts starts now, not at the claim: starting a worker can take
                # seconds (a cold fork server on a busy machine, an image pull in a cluster).
                self.catalog.heartbeat(row.job_id, row.attempt)
                started += 1
            except Exception as exc:  # a failed start must not stop the loop
                logger.exception("could not start job %s", row.job_id)
                self._lost(row.job_id, row.attempt, "start_failed", str(exc))
        return started + self._start_shards()

    def _start_shards(self) -> int:
        """Local runner: claim queued shards of running sharded jobs, one worker each, up to the limit."""
        if self.runner.runs_shards_as_one_job:
            return 0
        free = self.settings.max_concurrent_jobs - self.runner.running()
        started = 0
        # Each shard runs under its job's resources, sharing the cores, with its model
        jobs: dict[str, tuple[dict, int, dict | None]] = {}
        for row in self.catalog.claim_shards(free, worker=self.name):
            if row.job_id not in jobs:
                job = self.catalog.get_job_row(row.job_id)
                share = min(job.shards or 1, self.settings.max_concurrent_jobs)
                jobs[row.job_id] = (job.resources, share, self._model_of(job))
            resources, share, model = jobs[row.job_id]
            spec = JobSpec(
                job_id=row.job_id,
                kind=row.kind,
                attempt=row.attempt,
                shard=row.shard,
                resources=resources,
                share=share,
                model=model,
            )
            try:
                self.runner.submit(spec)
                self.catalog.shard_heartbeat(row.job_id, row.shard, row.attempt)  # silence counts from the start
                started += 1
            except Exception as exc:  # a failed start must not stop the loop
                logger.exception("could not start job %s shard %s", row.job_id, row.shard)
                self._lost(row.job_id, row.attempt, "start_failed", str(exc), shard=row.shard)
        return started

    def _model_of(self, job) -> dict | None:
        """The model a predict job loads, for a runner that loads it ahead of its workers (else None)."""
        if not self.runner.warms_models or job.kind != "predict" or not job.model_id:
            return None
        try:
            model = self.catalog.get_model_row(job.model_id)
        except KubepredictError:  # gone: the worker fails the job with the reason
            return None
        if not model.artifact_key or not model.artifact_sha256:
            return None
        return {"model_id": model.model_id, "key": model.artifact_key, "sha256": model.artifact_sha256}

    def run(self) -> None:
        logger.info("dispatcher %s: up to %s jobs at once", self.name, self.settings.max_concurrent_jobs)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # e.g. the database blipped; try again next round
                logger.exception("dispatcher round failed")
            self._wake.wait(self.settings.dispatch_interval_seconds)
            self._wake.clear()

    def wake(self) -> None:
        """Run a round now (a job was just queued in this process)."""
        self._wake.set()

    def start(self) -> Dispatcher:
        self.runner.start()
        return super().start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.runner.close()


def make_runner(settings) -> JobRunner:
    if settings.runner == "kubernetes":
        from .kubernetes import KubernetesJobRunner

        return KubernetesJobRunner.from_settings(settings)
    from .local import LocalProcessRunner

    return LocalProcessRunner(settings)
