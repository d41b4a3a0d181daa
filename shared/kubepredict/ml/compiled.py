"""A fitted pipeline compiled into plain numpy for online scoring, checked against scikit-learn.

Scoring one row through the stored pipeline costs milliseconds: the ColumnTransformer builds pandas
frames, and every estimator call re-validates its input (and a forest starts joblib for 100 trees).
The arithmetic itself is microseconds. ``compile_pipeline`` reads the fitted parameters of our own
preprocessing (median imputer + scaler for numbers, most-frequent imputer + one-hot for categories)
and, for the estimators whose prediction is simple arithmetic (logistic regression, decision trees
and forests of them), the estimator's parameters too; any other estimator (regressors included, whose
values must match the batch job's bit for bit) is called on the already transformed numpy matrix. A
pipeline of any other shape is not compiled at all.

A compiled scorer is only used after ``verify`` has shown that it gives the same answers as the
pipeline (same labels, identical values, probabilities within 1e-9) — at training time on the held-out
split (recorded in the model's metrics as ``serving``), and again on a probe when a server loads it.
The scikit-learn pipeline stays the always-correct fallback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from kubepredict.errors import InvalidInput
from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import CATEGORICAL, NUMERIC
from kubepredict.ml.scoring import ScoreResult, check_columns

TOLERANCE = 1e-9
LINEAR_CLASSIFIERS = {"sklearn.linear_model._logistic.LogisticRegression"}
TREE_CLASSIFIERS = {
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
}
TREE_REGRESSORS = {
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
}


def _dotted(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


@dataclass(frozen=True)
class _Numeric:
    names: list[str]
    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class _Categorical:
    name: str
    fill: str
    index: dict[str, int]  # category -> output column (relative); infrequent ones share the last
    width: int


class CompiledScorer:
    """Scores a Table of raw feature columns with numpy; same answers as the pipeline it came from."""

    def __init__(
        self,
        *,
        kind: str,
        task: str,
        features: list[str],
        numeric: _Numeric | None,
        categorical: list[_Categorical],
        estimator,
        classes: np.ndarray | None,
    ):
        self.kind = kind
        self.task = task
        self.features = features
        self._numeric = numeric
        self._categorical = categorical
        self._estimator = estimator
        self._classes = classes if classes is not None else np.empty(0)  # a regressor has none
        self.classes = json_safe(classes) if classes is not None and task == "classification" else None
        self.width = (len(numeric.names) if numeric else 0) + sum(c.width for c in categorical)
        if kind == "linear-classifier":
            self._coef = np.ascontiguousarray(estimator.coef_.T, dtype=np.float64)
            self._intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        elif kind in ("tree-classifier", "tree-regressor"):
            self._forest = _Forest(
                [t.tree_ for t in (getattr(estimator, "estimators_", None) or [estimator])],
                int(estimator.n_classes_) if kind == "tree-classifier" else 1,
            )

    @property
    def numbers_only(self) -> bool:
        """Whether every feature is a number (no one-hot columns to build row by row)."""
        return self._numeric is not None and not self._categorical

    # ---- preprocessing ---------------------------------------------------------------------
    def transform(
        self, columns: Mapping[str, Sequence[Any] | np.ndarray], n_rows: int, *, order: Literal["C", "F"] = "C"
    ) -> np.ndarray:
        """The preprocessed matrix (what the pipeline's ColumnTransformer would give) for raw columns, in
        ``order`` ("F": laid out as scikit-learn's own output, which a matrix product rounds alike)."""
        check_columns(columns, self.features)
        if n_rows == 0:
            raise InvalidInput("no rows to score", code="invalid_instances")
        out = np.zeros((n_rows, self.width), dtype=np.float64, order=order)
        at = 0
        num = self._numeric
        if num is not None:
            block = out[:, : len(num.names)]
            for j, name in enumerate(num.names):
                block[:, j] = _numbers(name, columns[name], n_rows)
            missing = np.isnan(block)
            if missing.any():
                block[missing] = np.broadcast_to(num.fill, block.shape)[missing]
            if not np.isfinite(block).all():
                bad = [num.names[j] for j in np.flatnonzero(~np.isfinite(block).all(axis=0))]
                raise InvalidInput(
                    f"column {bad[0]!r} holds an infinite or too large number",
                    code="invalid_values",
                    details={"column": bad[0], "columns": bad},
                )
            block -= num.mean
            block /= num.scale
            at = len(num.names)
        for cat in self._categorical:
            values = columns[cat.name]
            index, fill = cat.index, cat.fill
            for i in range(n_rows):
                v = values[i]
                key = fill if _missing(v) else (v if isinstance(v, str) else str(v))
                k = index.get(key)
                if k is not None:
                    out[i, at + k] = 1.0
            at += cat.width
        return out

    # ---- estimator -------------------------------------------------------------------------
    def score(self, columns: Mapping[str, Sequence[Any] | np.ndarray], n_rows: int) -> ScoreResult:
        Xt = self.transform(columns, n_rows)
        probabilities = None
        kind = self.kind
        if kind == "linear-classifier":
            z = Xt @ self._coef + self._intercept
            if z.shape[1] == 1:
                p = 1.0 / (1.0 + np.exp(-z[:, 0]))
                probabilities = np.column_stack([1.0 - p, p])
                predictions = self._classes[(z[:, 0] > 0).astype(int)]
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                probabilities = e / e.sum(axis=1, keepdims=True)
                predictions = self._classes[np.argmax(z, axis=1)]
        elif kind == "tree-classifier":
            probabilities = self._forest.mean(Xt)
            predictions = self._classes.take(np.argmax(probabilities, axis=1))
        elif kind == "tree-regressor":
            predictions = self._forest.mean(Xt)[:, 0]
        else:  # "estimator": the fitted estimator itself, on the preprocessed matrix
            est = self._estimator
            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                predictions = np.asarray(est.predict(Xt))
                if self.task == "classification" and hasattr(est, "predict_proba"):
                    probabilities = np.asarray(est.predict_proba(Xt), dtype=float)
        if self.task != "classification":
            probabilities = None
        return ScoreResult(predictions=np.asarray(predictions), probabilities=probabilities, classes=self.classes)


class _Forest:
    """Every tree of a forest in flat arrays, walked for all trees at once (one numpy step per level).

    Same arithmetic as scikit-learn: inputs are rounded to float32 first, a row goes left when
    ``x <= threshold``, leaf values are summed tree by tree in order (cumsum is sequential) and
    divided by the number of trees.
    """

    def __init__(self, trees, n_values: int):
        offsets = np.cumsum([0] + [t.node_count for t in trees[:-1]])
        self.roots = offsets.astype(np.intp)
        self.left = np.concatenate(
            [np.where(t.children_left >= 0, t.children_left + o, -1) for t, o in zip(trees, offsets, strict=True)]
        ).astype(np.intp)
        self.right = np.concatenate(
            [np.where(t.children_right >= 0, t.children_right + o, -1) for t, o in zip(trees, offsets, strict=True)]
        ).astype(np.intp)
        self.feature = np.concatenate([np.maximum(t.feature, 0) for t in trees]).astype(np.intp)
        self.threshold = np.concatenate([t.threshold for t in trees]).astype(np.float64)
        self.value = np.concatenate([t.value[:, 0, :n_values] for t in trees]).astype(np.float64)
        self.leaf = self.left < 0
        self.depth = max(int(t.max_depth) for t in trees)
        self.n_trees = len(trees)

    def mean(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        rows = np.arange(X.shape[0])[:, None]
        nodes = np.broadcast_to(self.roots, (X.shape[0], self.n_trees)).copy()
        for _ in range(self.depth):
            leaf = self.leaf[nodes]
            if leaf.all():
                break
            go_left = X[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(leaf, nodes, np.where(go_left, self.left[nodes], self.right[nodes]))
        total = np.cumsum(self.value[nodes], axis=1)[:, -1, :]
        return total / self.n_trees


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _numbers(name: str, values: Sequence[Any] | np.ndarray, n_rows: int) -> np.ndarray:
    """A column of numbers as float64 (None and blank strings become NaN); a 400 naming bad values."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    if str not in set(map(type, values)):  # strings go the careful way (numpy takes "1_000")
        try:
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape == (n_rows,):
                return arr
        except (TypeError, ValueError, OverflowError):
            pass
    out = np.empty(n_rows, dtype=np.float64)
    bad = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            out[i] = np.nan
            continue
        try:
            if isinstance(v, str) and "_" in v:
                raise ValueError(v)
            out[i] = float(v)
        except (TypeError, ValueError, OverflowError):
            bad.append(v)
            out[i] = np.nan
    if bad:
        examples = [str(v)[:40] for v in dict.fromkeys(map(str, bad))][:3]
        raise InvalidInput(
            f"column {name!r} should be numeric but holds {', '.join(map(repr, examples))}",
            code="invalid_values",
            details={"column": name, "examples": examples},
        )
    return out


def _preprocessing(pre: ColumnTransformer, features: list[str], kinds: dict[str, str]):
    """Read the fitted parameters of our own ColumnTransformer; None if it is any other shape."""
    numeric = None
    categorical: list[_Categorical] = []
    order: list[str] = []
    if getattr(pre, "remainder", None) != "drop":
        return None
    for name, transformer, fitted_cols in pre.transformers_:
        if name == "remainder":
            continue
        cols = list(fitted_cols)
        if not all(isinstance(c, str) for c in cols):
            return None
        steps = dict(getattr(transformer, "steps", []))
        if name == "num" and set(steps) == {"impute", "scale"} and numeric is None:
            imp, sc = steps["impute"], steps["scale"]
            if imp.strategy != "median" or not imp.keep_empty_features or imp.add_indicator:
                return None
            if not (sc.with_mean and sc.with_std) or len(imp.statistics_) != len(cols):
                return None
            numeric = _Numeric(
                cols,
                np.asarray(imp.statistics_, dtype=np.float64),
                np.asarray(sc.mean_, dtype=np.float64),
                np.asarray(sc.scale_, dtype=np.float64),
            )
            order.append("num")
        elif name == "cat" and set(steps) == {"impute", "onehot"} and not categorical:
            imp, enc = steps["impute"], steps["onehot"]
            if imp.strategy != "most_frequent" or imp.add_indicator or enc.drop is not None:
                return None
            if enc.handle_unknown != "ignore" or getattr(enc, "sparse_output", False):
                return None
            infrequent = getattr(enc, "infrequent_categories_", None) or [None] * len(cols)
            for col, fill, cats, rare in zip(cols, imp.statistics_, enc.categories_, infrequent, strict=True):
                rare_set = set() if rare is None else {str(r) for r in rare}
                index, k = {}, 0
                for c in cats:
                    if str(c) not in rare_set:
                        index[str(c)] = k
                        k += 1
                if rare_set:
                    for r in rare_set:
                        index[r] = k
                    k += 1
                categorical.append(_Categorical(col, str(fill), index, k))
            order.append("cat")
        else:
            return None
    if order not in (["num"], ["cat"], ["num", "cat"]):
        return None
    covered = (numeric.names if numeric else []) + [c.name for c in categorical]
    if sorted(covered) != sorted(features):
        return None
    if any(kinds.get(c) != NUMERIC for c in (numeric.names if numeric else [])):
        return None
    if any(kinds.get(c.name) != CATEGORICAL for c in categorical):
        return None
    return numeric, categorical


def compile_pipeline(pipeline, *, features: list[str], kinds: dict[str, str], task: str) -> CompiledScorer | None:
    """A numpy scorer for our own pipeline shape, or None when the pipeline is anything else."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    pre, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, ColumnTransformer) or not hasattr(estimator, "predict"):
        return None
    parts = _preprocessing(pre, features, kinds)
    if parts is None:
        return None
    numeric, categorical = parts
    name = _dotted(estimator)
    classes = getattr(estimator, "classes_", None)
    kind = "estimator"
    if task == "classification" and name in LINEAR_CLASSIFIERS:
        kind = "linear-classifier"
    elif task == "classification" and name in TREE_CLASSIFIERS and getattr(estimator, "n_outputs_", 1) == 1:
        kind = "tree-classifier"
    elif task == "regression" and name in TREE_REGRESSORS and getattr(estimator, "n_outputs_", 1) == 1:
        kind = "tree-regressor"
    return CompiledScorer(
        kind=kind,
        task=task,
        features=list(features),
        numeric=numeric,
        categorical=categorical,
        estimator=estimator,
        classes=np.asarray(classes) if classes is not None else None,
    )


def verify(compiled: CompiledScorer, pipeline, frame, *, task: str) -> dict:
    """Score ``frame`` both ways; ``{"rows", "max_abs_diff", "equal"}`` (equal: labels same, values within 1e-9)."""
    from kubepredict.ml.scoring import score

    if len(frame) == 0:
        return {"rows": 0, "max_abs_diff": 0.0, "equal": True}
    expected = score(pipeline, frame, features=compiled.features, kinds=_kinds(compiled), task=task)
    columns = {c: frame[c].to_numpy(dtype=object) for c in compiled.features}
    got = compiled.score(columns, len(frame))
    diff = 0.0
    equal = True
    if task == "regression":
        a, b = np.asarray(got.predictions, float), np.asarray(expected.predictions, float)
        diff = float(np.max(np.abs(a - b))) if len(a) else 0.0
        # Values are compared bit for bit: an online answer must equal the batch job's for the same row.
        equal = bool(np.array_equal(a, b))
    else:
        equal = bool(np.array_equal(np.asarray(got.predictions), np.asarray(expected.predictions)))
    if expected.probabilities is not None or got.probabilities is not None:
        if (
            expected.probabilities is None
            or got.probabilities is None
            or expected.probabilities.shape != got.probabilities.shape
        ):
            return {"rows": len(frame), "max_abs_diff": None, "equal": False}
        pd_ = float(np.max(np.abs(expected.probabilities - got.probabilities)))
        diff = max(diff, pd_)
        equal = equal and pd_ <= TOLERANCE
    return {"rows": int(len(frame)), "max_abs_diff": diff, "equal": equal}


def _kinds(compiled: CompiledScorer) -> dict[str, str]:
    kinds = {n: NUMERIC for n in (compiled._numeric.names if compiled._numeric else [])}
    kinds.update({c.name: CATEGORICAL for c in compiled._categorical})
    return kinds


def probe_frame(compiled: CompiledScorer, rows: int = 8):
    """Synthetic rows around the fitted statistics (medians, spread, each category, missing values)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    data: dict[str, list] = {}
    num = compiled._numeric
    if num is not None:
        for j, name in enumerate(num.names):
            vals = list(num.mean[j] + num.scale[j] * rng.normal(0, 1.5, rows))
            vals[0] = None
            data[name] = vals
    for cat in compiled._categorical:
        cats = list(cat.index) or [cat.fill]
        vals = [cats[i % len(cats)] for i in range(rows)]
        vals[1 % rows] = None
        data[cat.name] = vals
    return pd.DataFrame(data)


def describe(check: dict | None, compiled: CompiledScorer | None, reason: str | None = None) -> dict:
    """What goes into the model's metrics as ``serving``."""
    if compiled is None or check is None:
        return {"fast_path": None, "reason": reason or "pipeline shape not compiled"}
    return {
        "fast_path": compiled.kind if check and check["equal"] else None,
        "verified_rows": check["rows"],
        "max_abs_diff": check["max_abs_diff"],
        **({} if check["equal"] else {"reason": "compiled answers differ from scikit-learn's"}),
    }
