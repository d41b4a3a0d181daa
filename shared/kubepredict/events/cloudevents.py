"""CloudEvents 1.0 in structured JSON mode, as written to the outbox and published to Kafka."""

from __future__ import annotations

import uuid
from typing import Any

from ..ids import iso, utcnow

SOURCE = "/kubepredict"
TYPES = (
    "kubepredict.dataset.uploaded",
    "kubepredict.job.queued",
    "kubepredict.job.started",
    "kubepredict.job.succeeded",
    "kubepredict.job.failed",
    "kubepredict.job.cancelled",
    "kubepredict.model.ready",
    "kubepredict.model.deleted",
    "kubepredict.model.drift_detected",
    "kubepredict.model.alias_set",
    "kubepredict.model.alias_deleted",
    "kubepredict.model.promoted",
    "kubepredict.model.imported",
)


def make_event(kind: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """Build a CloudEvent; ``kind`` is the short type such as ``job.queued``."""
    etype = f"kubepredict.{kind}"
    if etype not in TYPES:
        raise ValueError(f"unknown event type {etype}")
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": etype,
        "subject": subject,
        "time": iso(utcnow()),
        "datacontenttype": "application/json",
        "data": data,
    }
