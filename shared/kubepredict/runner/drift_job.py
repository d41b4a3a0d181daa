"""A batch predict job's drift report: the model's profile loaded, rows counted, the report merged.

A whole job counts its rows and reports (``report``). Each shard of a sharded job hands over, in its
summary, its counts plus the reference they were counted against and the threshold (``shard_partial``),
so the job's last shard (or the dispatcher) merges the histograms into one report over every row
(``merged_report``) without the object store or the settings.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..ml import drift
from ..ml.profile import profile_key

logger = logging.getLogger(__name__)


def load_counter(svc, model) -> drift.DriftCounter | dict[str, Any]:
    """A counter against ``model``'s profile, or the ``summary.drift`` saying why there is none."""
    key = profile_key(model.model_id)
    try:
        if not svc.storage.exists(key):
            return drift.absent(
                "this model has no reference profile (it was trained before drift reports existed); retrain it",
                "no_profile",
            )
        reference = json.loads(svc.storage.get(key))
        reference.pop("background", None)  # the explanations' sample: not needed here
        return drift.DriftCounter(reference)
    except Exception as exc:  # drift is a report about the job, never its failure
        logger.warning("could not load the profile of model %s", model.model_id, exc_info=True)
        return drift.absent(f"the model's reference profile could not be read: {type(exc).__name__}", "bad_profile")


def report(counter: drift.DriftCounter | dict[str, Any], threshold: float) -> dict[str, Any]:
    return counter.report(threshold) if isinstance(counter, drift.DriftCounter) else counter


def shard_partial(counter: drift.DriftCounter | dict[str, Any], threshold: float) -> dict[str, Any]:
    if not isinstance(counter, drift.DriftCounter):
        return {"absent": counter}
    return {"reference": counter.reference, "threshold": threshold, "counts": counter.partial()}


def merged_report(partials: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One report from the shards' partials (their histograms summed)."""
    if not partials or any(p is None for p in partials):
        return drift.absent("a shard did not report drift counts", "no_profile")
    for p in partials:
        if p and "absent" in p:
            return p["absent"]
    first = partials[0] or {}
    total = drift.DriftCounter(first["reference"])
    for p in partials:
        total.merge((p or {})["counts"])
    return total.report(float(first["threshold"]))
