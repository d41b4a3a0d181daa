"""Held-out metrics and feature importances for a fitted pipeline (API.md §2 train metrics)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import output_columns

logger = logging.getLogger(__name__)

SILHOUETTE_MAX_ROWS = 5000
PERMUTATION_MAX_ROWS = 500
PERMUTATION_REPEATS = 3


def _num(value) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def classification_metrics(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray) -> dict:
    """Accuracy, macro F1/precision/recall, ROC AUC where defined, confusion matrix and labels."""
    pred = pipeline.predict(X)
    classes = np.asarray(pipeline.classes_)
    labels = np.unique(np.concatenate([classes, np.asarray(y, dtype=classes.dtype)]))
    out = {
        "accuracy": _num(skm.accuracy_score(y, pred)),
        "f1_macro": _num(skm.f1_score(y, pred, average="macro", zero_division=0)),
        "precision_macro": _num(skm.precision_score(y, pred, average="macro", zero_division=0)),
        "recall_macro": _num(skm.recall_score(y, pred, average="macro", zero_division=0)),
    }
    auc = _roc_auc(pipeline, X, y, classes)
    if auc is not None:
        out["roc_auc"] = auc
    out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=labels).tolist()
    out["labels"] = json_safe(labels)
    return out


def _roc_auc(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, classes: np.ndarray) -> float | None:
    # Undefined without probabilities, or when the test split lacks one of the model's classes.
    if not hasattr(pipeline, "predict_proba") or len(classes) < 2:
        return None
    if set(np.unique(y).tolist()) != set(classes.tolist()):
        return None
    try:
        proba = pipeline.predict_proba(X)
        if len(classes) == 2:
            return _num(skm.roc_auc_score((y == classes[1]).astype(int), proba[:, 1]))
        return _num(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))
    except (ValueError, AttributeError) as exc:  # e.g. SVC(probability=False) behind a dotted name
        logger.info("roc_auc skipped: %s", exc)
        return None


PVA_POINTS = 200


def regression_metrics(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray) -> dict:
    """R², MAE and RMSE on held-out rows (R² is None with fewer than two rows)."""
    pred = pipeline.predict(X)
    r2 = skm.r2_score(y, pred) if len(y) >= 2 else float("nan")
    sample = np.random.default_rng(0).permutation(len(y))[:PVA_POINTS]
    return {
        "r2": _num(r2),
        "mae": _num(skm.mean_absolute_error(y, pred)),
        "rmse": _num(math.sqrt(skm.mean_squared_error(y, pred))),
        # A bounded sample of held-out points for predicted-vs-actual and residual charts.
        "predicted_vs_actual": {
            "actual": [_num(v) for v in np.asarray(y, dtype=float)[sample]],
            "predicted": [_num(v) for v in np.asarray(pred, dtype=float)[sample]],
        },
    }


def clustering_metrics(pipeline: Pipeline, X: pd.DataFrame, random_state: int | None) -> dict:
    """Silhouette (on at most 5000 rows; omitted with < 2 clusters) and cluster sizes."""
    labels = pipeline.predict(X)
    values, counts = np.unique(labels, return_counts=True)
    out: dict = {}
    score = silhouette(pipeline, X, labels, random_state)
    if score is not None:
        out["silhouette"] = score
    out["cluster_sizes"] = {str(json_safe(v)): int(c) for v, c in zip(values, counts, strict=True)}
    return out


def silhouette(pipeline: Pipeline, X: pd.DataFrame, labels: np.ndarray, random_state: int | None) -> float | None:
    """Silhouette of ``labels`` in the preprocessed space, or None when undefined."""
    k = len(np.unique(labels))
    if not 2 <= k <= len(labels) - 1:
        return None
    Xt = pipeline[:-1].transform(X)
    sample = SILHOUETTE_MAX_ROWS if len(labels) > SILHOUETTE_MAX_ROWS else None
    return _num(skm.silhouette_score(Xt, labels, sample_size=sample, random_state=random_state))


def feature_importance(
    pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray | None, features: list[str], random_state: int | None
) -> dict[str, float | None] | None:
    """Importance per original input column: model importances/|coef| summed over one-hot columns,
    else permutation importance on at most 500 held-out rows."""
    estimator = pipeline[-1]
    weights = None
    if hasattr(estimator, "feature_importances_"):
        weights = np.asarray(estimator.feature_importances_, dtype=float)
    elif hasattr(estimator, "coef_"):
        coef = np.abs(np.asarray(estimator.coef_, dtype=float))
        weights = coef.mean(axis=0) if coef.ndim == 2 else coef
    if weights is not None:
        owners = output_columns(pipeline[0])
        if len(owners) == len(weights):
            sums = dict.fromkeys(features, 0.0)
            for owner, w in zip(owners, weights, strict=True):
                sums[owner] += float(w)
            return {k: _num(v) for k, v in sums.items()}
        logger.warning("importance layout mismatch (%d vs %d); using permutation", len(owners), len(weights))
    if y is None or len(y) == 0:
        return None
    if len(y) > PERMUTATION_MAX_ROWS:
        rng = np.random.default_rng(random_state)
        idx = np.sort(rng.choice(len(y), PERMUTATION_MAX_ROWS, replace=False))
        X, y = X.iloc[idx], np.asarray(y)[idx]
    result = permutation_importance(pipeline, X, y, n_repeats=PERMUTATION_REPEATS, random_state=random_state, n_jobs=1)
    return {name: _num(v) for name, v in zip(X.columns, result.importances_mean, strict=True)}
