"""Orphans: objects under ``datasets/`` and ``models/`` that no catalogue row owns (or a failed model's row
owns no longer), staging files a killed
process left behind, and prediction rows of failed jobs; found, and removed (objects once older than a
grace period).

A dataset's objects are written before its catalogue row (an upload in progress owns objects no row
names yet) and a model's row exists before its artifact, so only what is older than the grace period
(``KUBEPREDICT_ORPHAN_GRACE_SECONDS``, default 1 h) is ever removed. Runs at gateway start (in the
background) and as ``kubepredict gc [--dry-run]``; works on any store the ``Storage`` port covers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: Object key prefix → the catalogue's ids of the rows that own such folders.
OWNERS = {"datasets/": "dataset_ids", "models/": "model_ids"}
#: Object key prefix → ids of rows that exist but own their folder no longer (a model whose training
#: failed after writing part of its artefact: nothing reads it, and no later attempt reuses the folder).
DISOWNED = {"models/": "failed_model_ids"}


@dataclass
class Sweep:
    objects: list[str] = field(default_factory=list)  # object keys no row owns
    staging: list[str] = field(default_factory=list)  # leftover staging files
    predictions: list[str] = field(default_factory=list)  # failed jobs still holding prediction rows
    removed: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def found(self) -> list[str]:
        """Object keys and staging files, then ``predictions/<job_id>`` for each failed job's rows (left when a
        full disk refused their delete as the job failed)."""
        return self.objects + self.staging + [f"predictions/{job_id}" for job_id in self.predictions]


def _grace(svc, grace_seconds: float | None) -> float:
    return svc.settings.orphan_grace_seconds if grace_seconds is None else grace_seconds


def find_orphans(svc, *, grace_seconds: float | None = None, now: float | None = None) -> list[str]:
    """Keys (and staging file names) that ``sweep`` would remove; removes nothing.

    ``grace_seconds`` (default the setting): only what was last written longer ago than this counts. Pass
    ``0`` when nothing writes (the end of a soak run) to see every orphan."""
    return _find(svc, _grace(svc, grace_seconds), now).found


def _find(svc, grace: float, now: float | None) -> Sweep:
    cutoff = (time.time() if now is None else now) - grace
    found = Sweep()
    for prefix, ids in OWNERS.items():
        listed = [o for o in svc.storage.list_modified(prefix) if o.modified < cutoff]
        if not listed:
            continue
        owned = getattr(svc.catalog, ids)()  # read after listing: a row committed meanwhile is seen
        if prefix in DISOWNED:
            owned -= getattr(svc.catalog, DISOWNED[prefix])()
        for obj in listed:
            owner = obj.key[len(prefix) :].split("/", 1)[0]
            if owner not in owned:
                found.objects.append(obj.key)
    found.staging = svc.storage.stale_staging(cutoff)
    found.predictions = svc.catalog.failed_jobs_with_predictions()
    return found


def sweep(svc, *, dry_run: bool = False, grace_seconds: float | None = None, now: float | None = None) -> Sweep:
    """Find orphans (as ``find_orphans``) and, unless ``dry_run``, delete them."""
    found = _find(svc, _grace(svc, grace_seconds), now)
    if dry_run:
        return found
    if found.predictions:
        try:
            svc.catalog.drop_failed_predictions()
            found.removed += len(found.predictions)
        except Exception:  # the object sweep still runs
            logger.warning("could not drop the predictions of failed jobs", exc_info=True)
            found.failed += [f"predictions/{job_id}" for job_id in found.predictions]
    for key in found.objects:
        try:
            svc.storage.delete(key)
            found.removed += 1
        except Exception:  # one stuck object must not stop the sweep
            logger.warning("could not remove orphaned object %s", key, exc_info=True)
            found.failed.append(key)
    for name in found.staging:
        try:
            svc.storage.remove_staging(name)
            found.removed += 1
        except Exception:
            logger.warning("could not remove staging file %s", name, exc_info=True)
            found.failed.append(name)
    if found.removed:
        logger.info("orphan sweep removed %d objects and staging files", found.removed)
    return found


def sweep_in_background(svc) -> None:
    """The start-up sweep: a daemon thread, so a large store never delays serving; failures are logged."""
    import threading

    def run() -> None:
        try:
            sweep(svc)
        except Exception:  # a sweep is housekeeping; the next start tries again
            logger.warning("orphan sweep at start failed", exc_info=True)

    threading.Thread(target=run, name="orphan-sweep", daemon=True).start()
