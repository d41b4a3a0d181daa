"""The champion/challenger gate's arithmetic: which metrics a promotion may compare, and each one's score."""

from __future__ import annotations

import pandas as pd

from kubepredict.errors import InvalidInput
from kubepredict.ml import evaluation
from kubepredict.ml.preprocess import coerce_frame
from kubepredict.ml.training import _target_values

#: metric -> +1 when higher is better, -1 when lower is better
METRICS: dict[str, dict[str, int]] = {
    "classification": {"accuracy": 1, "f1_macro": 1, "precision_macro": 1, "recall_macro": 1, "roc_auc": 1},
    "regression": {"r2": 1, "mae": -1, "rmse": -1},
}


def check_metric(task: str, metric: str) -> None:
    allowed = METRICS.get(task)
    if not allowed or metric not in allowed:
        raise InvalidInput(
            f"promotion compares a {task} metric: one of {', '.join(allowed or []) or 'none (no labels)'}",
            code="invalid_promote",
            details={"field": "promote.metric", "task": task, "allowed": sorted(allowed or [])},
        )


def score(pipeline, frame: pd.DataFrame, *, features: list[str], kinds: dict, target: str, task: str, metric: str):
    """``metric`` of ``pipeline`` on the labelled rows of ``frame`` (None where undefined, e.g. roc_auc)."""
    frame = frame[frame[target].notna()]
    X = coerce_frame(frame[features], kinds)
    y = _target_values(frame[target], task)
    if task == "classification":
        values = evaluation.classification_metrics(pipeline, X, y)
    else:
        values = evaluation.regression_metrics(pipeline, X, y)
    return values.get(metric)


def gain(task: str, metric: str, new: float, old: float) -> float:
    """How much better ``new`` is than ``old`` (positive: better, whichever way the metric points)."""
    return round(METRICS[task][metric] * (new - old), 6)
