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

from .base import JobRunner, JobSpec

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, catalog, runner: JobRunner, settings):
        self.catalog, self.runner, self.settings = catalog, runner, settings
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll = float("-inf")
        runner.on_lost = self._lost

    def _lost(self, job_id: str, attempt: int, code: str, message: str) -> None:
        self.catalog.lost(job_id, attempt, code, message)

    def tick(self) -> int:
        """One round: reap dead or silent workers, stop cancelled ones, start queued jobs. Returns jobs started."""
        now = time.monotonic()
        if now - self._last_poll >= self.runner.poll_interval_seconds:
            self.runner.poll()
            self._last_poll = now
        for job_id, attempt in self.catalog.stale_running(self.settings.heartbeat_timeout_seconds):
            self._lost(job_id, attempt, "heartbeat_timeout",
                       f"no heartbeat for {self.settings.heartbeat_timeout_seconds:.0f} s")
        for job_id, (status, _attempt) in self.catalog.statuses(self.runner.running_ids()).items():
            if status != "running":
                self.runner.cancel(job_id)
        free = self.settings.max_concurrent_jobs - self.runner.running()
        if free <= 0:
            return 0
        started = 0
        for row in self.catalog.claim_next(free, worker=self.name):
            spec = JobSpec(job_id=row.job_id, kind=row.kind, attempt=row.attempt, resources=_resources(row))
            try:
                self.runner.submit(spec)
                # The silence that counts starts now, not at the claim: starting a worker can take
                # seconds (a cold fork server on a busy machine, an image pull in a cluster).
                self.catalog.heartbeat(row.job_id, row.attempt)
                started += 1
            except Exception as exc:  # noqa: BLE001 - a failed start must not stop the loop
                logger.exception("could not start job %s", row.job_id)
                self._lost(row.job_id, row.attempt, "start_failed", str(exc))
        return started

    def run(self) -> None:
        logger.info("dispatcher %s: up to %s jobs at once", self.name, self.settings.max_concurrent_jobs)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - e.g. the database blipped; try again next round
                logger.exception("dispatcher round failed")
            self._stop.wait(self.settings.dispatch_interval_seconds)

    def start(self) -> "Dispatcher":
        self.runner.start()
        self._thread = threading.Thread(target=self.run, name="dispatcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.runner.close()


def _resources(row) -> dict:
    import json

    try:
        return (json.loads(row.request) or {}).get("resources") or {}
    except ValueError:
        return {}


def make_runner(settings) -> JobRunner:
    if settings.runner == "kubernetes":
        from .kubernetes import KubernetesJobRunner

        return KubernetesJobRunner.from_settings(settings)
    from .local import LocalProcessRunner

    return LocalProcessRunner(settings)
