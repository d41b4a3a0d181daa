"""Per-row explanations: each original CSV column's contribution to a prediction, plus a base value.

For every explained row and every model output, ``base + sum(contributions) == output`` (to float
precision). Columns one-hot encoded by the preprocessing are summed back into their source column.
Three methods, tried in this order:

- ``linear`` (exact): linear models (``sklearn.linear_model``) computed from their coefficients through
  the fitted preprocessing: contribution of transformed column j = ``coef_j * (x_j - mean_j)`` with the mean
  over the model's background sample of training rows (zero without one), base = the model's output at
  that mean. Output: the prediction (regression) or ``decision_function``, i.e. log-odds (binary: of the
  second class) or the multinomial logits (several classes; probabilities are their softmax).
- ``tree`` (exact): tree models and ensembles of scikit-learn through ``shap.TreeExplainer``
  (path-dependent TreeSHAP on the fitted estimator in memory: nothing is pickled or loaded). Output:
  class probabilities for forests and single trees, log-odds/logits for gradient boosting (the scale is
  found by matching the explainer's totals against the model's own outputs).
- ``permutation`` (approximation, any model): Shapley values estimated by ``PERMUTATIONS`` random column
  orders (antithetic pairs) over at most ``BACKGROUND`` training rows stored with the model: for each order,
  the row's columns are switched in from the background one by one and the change of the mean output
  credited to the column switched. The sum is exact (the path always runs from the background mean to
  the row's output); each column's share is an estimate. Output: class probabilities, or the prediction.

Only models with a numeric output are explained (not clustering).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from kubepredict.errors import Unprocessable
from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import coerce_frame, output_columns

logger = logging.getLogger(__name__)

PERMUTATIONS = 8
BACKGROUND = 20
TOLERANCE = 1e-6
TREE_TOLERANCE = 1e-4
DECIMALS = 10


@dataclass
class Attribution:
    """Contributions ``(rows, outputs, columns)``, base ``(outputs,)``, the model's outputs ``(rows, outputs)``."""

    method: str
    scale: str
    outputs: list
    base: np.ndarray
    contributions: np.ndarray
    values: np.ndarray


def explain(
    pipeline, frame: pd.DataFrame, *, features: list[str], kinds: dict, task: str, background: pd.DataFrame | None
) -> dict[str, Any]:
    """The JSON answer for ``frame``'s rows (see the module doc); Unprocessable for models we cannot explain."""
    if task == "clustering":
        raise Unprocessable("clustering models cannot be explained (their output is a label)", code="not_explainable")
    X = coerce_frame(frame, {f: kinds[f] for f in features})
    bg = None if background is None or not len(background) else coerce_frame(background, kinds)
    attribution = None
    if isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
        pre, est = pipeline[:-1], pipeline.steps[-1][1]
        for method in (_linear, _tree):
            try:
                attribution = method(pre, est, X, bg, features, task)
            except Exception:
                logger.warning("%s explanation failed; trying the next method", method.__name__, exc_info=True)
                attribution = None
            if attribution is not None:
                break
    if attribution is None:
        if bg is None:
            raise Unprocessable(
                "this model has no background sample to explain with (trained before explanations existed); retrain it",
                code="no_profile",
            )
        attribution = _permutation(pipeline, X, bg.iloc[:BACKGROUND], features, task)
    return _answer(attribution, features)


def _answer(a: Attribution, features: list[str]) -> dict[str, Any]:
    def r(x):
        return np.round(np.asarray(x, dtype=float), DECIMALS).tolist()

    return {
        "method": a.method,
        "scale": a.scale,
        "outputs": json_safe(list(a.outputs)),
        "base": r(a.base),
        "columns": list(features),
        "rows": [
            {
                "output": r(a.values[i]),
                "contributions": {f: r(a.contributions[i, :, j]) for j, f in enumerate(features)},
            }
            for i in range(a.values.shape[0])
        ],
    }


def _transform(pre, X) -> np.ndarray:
    return np.asarray(pre.transform(X), dtype=float)


def _fold(contrib_t: np.ndarray, owners: list[str], features: list[str]) -> np.ndarray:
    """``(rows, outputs, transformed columns)`` summed into ``(rows, outputs, features)``."""
    index = {f: j for j, f in enumerate(features)}
    out = np.zeros(contrib_t.shape[:2] + (len(features),))
    for t, owner in enumerate(owners):
        out[:, :, index[owner]] += contrib_t[:, :, t]
    return out


def _outputs(est, task: str, k: int) -> list:
    classes = list(getattr(est, "classes_", []))
    if task != "classification":
        return ["value"]
    return classes[1:] if k == 1 and len(classes) == 2 else classes[:k]


def _linear(pre, est, X, bg, features, task) -> Attribution | None:
    if not type(est).__module__.startswith("sklearn.linear_model") or not hasattr(est, "coef_"):
        return None
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=float))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=float)) * np.ones(coef.shape[0])
    Xt = _transform(pre, X)
    mean = _transform(pre, bg).mean(axis=0) if bg is not None else np.zeros(Xt.shape[1])
    contrib_t = coef[None, :, :] * (Xt - mean)[:, None, :]
    base = intercept + coef @ mean
    if task == "classification":
        values = np.asarray(est.decision_function(Xt), dtype=float).reshape(len(Xt), -1)
        scale = "log-odds" if values.shape[1] == 1 else "logit"
    else:
        values = np.asarray(est.predict(Xt), dtype=float).reshape(len(Xt), -1)
        scale = "value"
    contrib = _fold(contrib_t, output_columns(pre[-1] if isinstance(pre, Pipeline) else pre), features)
    if values.shape[1] != coef.shape[0] or not _adds_up(base, contrib, values, TOLERANCE):
        return None  # e.g. a GLM with a link function: its prediction is not the linear sum
    return Attribution("linear", scale, _outputs(est, task, values.shape[1]), base, contrib, values)


def _tree(pre, est, X, bg, features, task) -> Attribution | None:
    if not type(est).__module__.startswith(("sklearn.ensemble", "sklearn.tree")):
        return None
    import shap  # imported on first use: it takes seconds

    Xt = _transform(pre, X)
    explainer = shap.TreeExplainer(est)
    sv = np.asarray(explainer.shap_values(Xt, check_additivity=False), dtype=float)
    ev = np.atleast_1d(np.asarray(explainer.expected_value, dtype=float))
    sv = sv[:, None, :] if sv.ndim == 2 else np.transpose(sv, (0, 2, 1))  # (rows, outputs, columns)
    contrib = _fold(sv, output_columns(pre[-1] if isinstance(pre, Pipeline) else pre), features)
    candidates = []
    if task == "classification":
        if hasattr(est, "predict_proba"):
            candidates.append(("probability", est.predict_proba))
        if hasattr(est, "decision_function"):
            candidates.append(
                ("log-odds" if len(getattr(est, "classes_", [])) == 2 else "logit", est.decision_function)
            )
    else:
        candidates.append(("value", est.predict))
    for scale, fn in candidates:
        values = np.asarray(fn(Xt), dtype=float).reshape(len(Xt), -1)
        if values.shape[1] == 2 and contrib.shape[1] == 1:
            values = values[:, 1:]
        if values.shape[1] == contrib.shape[1] and _adds_up(ev, contrib, values, TREE_TOLERANCE):
            return Attribution("tree", scale, _outputs(est, task, values.shape[1]), ev, contrib, values)
    return None


def _adds_up(base, contrib, values, tol: float) -> bool:
    total = np.asarray(base)[None, :] + contrib.sum(axis=2)
    return bool(np.allclose(total, values, rtol=0, atol=tol))


def _model_output(pipeline, task: str):
    est = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    if task == "classification" and hasattr(pipeline, "predict_proba"):
        return "probability", lambda Z: np.asarray(pipeline.predict_proba(Z), dtype=float)
    if task == "classification" and hasattr(pipeline, "decision_function"):
        k = len(getattr(est, "classes_", []))
        return ("log-odds" if k == 2 else "logit"), lambda Z: np.asarray(
            pipeline.decision_function(Z), dtype=float
        ).reshape(len(Z), -1)
    if task == "classification":
        raise Unprocessable("this classifier has neither probabilities nor scores to explain", code="not_explainable")
    return "value", lambda Z: np.asarray(pipeline.predict(Z), dtype=float).reshape(len(Z), -1)


def _permutation(pipeline, X, bg, features, task, seed: int = 0) -> Attribution:
    scale, f = _model_output(pipeline, task)
    rng = np.random.default_rng(seed)
    m, b = len(features), len(bg)
    orders = []
    for _ in range(PERMUTATIONS // 2):
        order = rng.permutation(m)
        orders += [order, order[::-1]]  # antithetic pairs lower the variance
    base = f(bg).mean(axis=0)
    k = base.shape[0]
    contrib = np.zeros((len(X), k, m))
    bg_values = bg[features].reset_index(drop=True)
    for i in range(len(X)):
        row = X.iloc[i]
        stacks = []
        for order in orders:
            z = bg_values.copy()
            for j in order:  # after switching column j in: one block of b rows
                z[features[j]] = row[features[j]]
                stacks.append(z.copy())
        means = f(pd.concat(stacks, ignore_index=True)).reshape(len(orders), m, b, k).mean(axis=2)
        for p, order in enumerate(orders):
            previous = base
            for step, j in enumerate(order):
                contrib[i, :, j] += means[p, step] - previous
                previous = means[p, step]
    contrib /= len(orders)
    values = f(X)
    est = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    return Attribution("permutation", scale, _outputs(est, task, k), base, contrib, values)
