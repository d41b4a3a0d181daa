"""``"explain": true`` on online and batch predictions: the row limit, the model's background sample,
and the explanation of a table of rows (``ml/explain.py`` does the arithmetic)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd

from ..errors import InvalidInput
from ..ml import explain, profile

logger = logging.getLogger(__name__)


def wanted(body: dict) -> bool:
    """Whether ``body`` asks for explanations; a non-boolean ``explain`` is a 400."""
    value = body.get("explain", False)
    if not isinstance(value, bool):
        raise InvalidInput("'explain' must be true or false", code="invalid_field", details={"field": "explain"})
    return value


def check_rows(svc, rows: int) -> None:
    """400 when more rows than ``KUBEPREDICT_EXPLAIN_MAX_ROWS`` are to be explained."""
    limit = svc.settings.explain_max_rows
    if rows > limit:
        raise InvalidInput(
            f"{rows} rows is more than the {limit} rows one request may explain "
            "(KUBEPREDICT_EXPLAIN_MAX_ROWS); explain fewer rows, or predict without 'explain'",
            code="too_many_rows_to_explain",
            details={"rows": rows, "limit": limit},
        )


def background(svc, model_id: str, sha256: str, kinds: dict) -> pd.DataFrame | None:
    """The model's stored background sample (cached with the model), None for a model without a profile."""

    def load():
        key = profile.profile_key(model_id)
        if not svc.storage.exists(key):
            return None
        return profile.background_frame(json.loads(svc.storage.get(key)), kinds)

    return svc.models.get(model_id, "background:" + sha256, load)


def explain_frame(svc, model_id: str, sha256: str, pipeline, frame: pd.DataFrame, *, features, kinds, task) -> dict:
    """Explanations of ``frame``'s rows (the caller checked the row limit)."""
    bg = background(svc, model_id, sha256, kinds)
    return explain.explain(pipeline, frame, features=features, kinds=kinds, task=task, background=bg)


def explain_table(svc, model, table) -> dict[str, Any]:
    """Explanations of an online request's rows (``model``: a ``serving.ServedModel``)."""
    check_rows(svc, table.n_rows)
    return explain_frame(
        svc,
        model.model_id,
        model.sha256,
        model.scorer,
        table.frame(),
        features=model.features,
        kinds=model.kinds,
        task=model.task,
    )
