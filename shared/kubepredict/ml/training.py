"""Train one pipeline (preprocess + estimator) from a DataFrame; runs inside a train job."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from kubepredict.errors import InvalidInput, KubepredictError, Unprocessable
from kubepredict.ml import evaluation, profile
from kubepredict.ml.algorithms import (
    AUTO,
    AUTO_CANDIDATES,
    AlgorithmSpec,
    build_estimator,
    check_task,
    import_estimator_class,
    infer_task,
    resolve,
)
from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import build_preprocessor, coerce_frame, column_kinds, plain_sklearn

logger = logging.getLogger(__name__)

MIN_ROWS = 5
CV_FOLDS = 3
AUTO_SCORING = {"classification": "accuracy", "regression": "r2", "clustering": "silhouette"}


@dataclass
class TrainResult:
    """A fitted pipeline and everything the catalogue records about it."""

    pipeline: Pipeline
    task: str
    algorithm: str
    estimator: str
    params: dict
    features: list[str]
    kinds: dict
    target: str | None
    classes: list | None
    metrics: dict = field(default_factory=dict)
    profile: dict | None = None  # the reference profile (ml/profile.py), stored as JSON next to the model


def _no_progress(stage: str, p: float) -> None:
    return None


def train(
    frame: pd.DataFrame,
    *,
    target: str | None,
    features: list[str] | None,
    task: str | None,
    algorithm: str,
    params: dict | None,
    test_size: float = 0.2,
    random_state: int | None = 0,
    progress: Callable[[str, float], None] = _no_progress,
) -> TrainResult:
    """Fit, evaluate and describe a model; raises InvalidInput / Unprocessable for unusable requests."""
    progress("preparing", 0.05)
    if task is not None:
        check_task(task)
    if target is None and task != "clustering":
        raise InvalidInput("target is required unless task is 'clustering'", code="missing_target")
    if not (isinstance(test_size, (int, float)) and 0 < test_size < 1):
        raise InvalidInput("test_size must be between 0 and 1 (exclusive)", code="invalid_test_size")
    features = _features(frame, target, features)
    if target is not None and task != "clustering":
        labelled = frame[target].notna()
        if not labelled.all():  # a copy of the whole frame only when some rows have no target
            frame = frame[labelled]
        task = task or infer_task(frame[target])
    task = task or "clustering"
    if len(frame) < MIN_ROWS:
        raise Unprocessable(
            f"{len(frame)} usable rows; at least {MIN_ROWS} are needed",
            code="too_few_rows",
            details={"rows": len(frame), "minimum": MIN_ROWS},
        )
    specs = _candidates(algorithm, task)
    kinds = column_kinds(frame, features)
    X = coerce_frame(frame, kinds)

    if task == "clustering":
        X_train, X_test, y_train, y_test = X, X.iloc[:0], None, None
    else:
        y = _target_values(frame[target], task)
        X_train, X_test, y_train, y_test = _split(X, y, task, test_size, random_state)
        # the split made copies: free these (and the frame, unless the caller holds it) before fitting,
        # the peak of memory
        del X, y, frame
    chosen, auto = (
        (specs[0], None)
        if len(specs) == 1
        else _search(specs, params, kinds, X_train, y_train, task, random_state, progress)
    )
    progress("fitting", 0.8 if auto else 0.1)
    pipeline = _pipeline(chosen, _own_params(chosen, params) if auto else params, kinds, random_state)
    started = time.perf_counter()
    _fit(pipeline, X_train, y_train)
    fit_seconds = time.perf_counter() - started
    plain_sklearn(pipeline)
    if not auto:
        progress("fitting", 0.8)
    progress("evaluating", 0.85)

    metrics = _metrics(pipeline, task, X_test if task != "clustering" else X_train, y_test, features, random_state)
    metrics.update(train_rows=len(X_train), test_rows=len(X_test), fit_seconds=round(fit_seconds, 4))
    if auto:
        metrics["auto"] = auto
    metrics["serving"] = serving_check(pipeline, features, kinds, task, X_test if len(X_test) else X_train)
    estimator = pipeline[-1]
    classes = json_safe(estimator.classes_) if task == "classification" else None
    reference = _profile(pipeline, X_train, X_test if len(X_test) else X_train, kinds, task, random_state)
    result = TrainResult(
        pipeline=pipeline,
        task=task,
        algorithm=chosen.name,
        estimator=chosen.estimator,
        params=json_safe(estimator.get_params(deep=False)),
        features=features,
        kinds=kinds,
        target=target,
        classes=classes,
        metrics=metrics,
        profile=reference,
    )
    progress("done", 1.0)
    logger.info("trained %s/%s on %d rows in %.2fs", task, chosen.name, len(X_train), fit_seconds)
    return result


def held_out(
    frame: pd.DataFrame,
    *,
    target: str | None,
    features: list[str] | None,
    task: str,
    test_size: float = 0.2,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """The rows ``train`` held out for ``frame`` and these arguments, prepared as it prepared them
    (clustering: every row, which its metrics score). ``kubepredict verify`` compares predictions on them."""
    features = _features(frame, target, features)
    if target is not None and task != "clustering":
        frame = frame[frame[target].notna()]
    X = coerce_frame(frame, column_kinds(frame, features))
    if task == "clustering":
        return X
    y = _target_values(frame[target], task)
    return _split(X, y, task, test_size, random_state)[1]


SERVING_CHECK_ROWS = 2000


def serving_check(pipeline, features, kinds, task, X) -> dict:
    """Compile the pipeline for online serving and check it against scikit-learn on held-out rows.

    Recorded in the model's metrics as ``serving``: which fast path serves it (None: the pipeline
    itself), on how many rows it was compared, and the largest difference seen.
    """
    from kubepredict.ml import compiled as fast

    try:
        scorer = fast.compile_pipeline(pipeline, features=features, kinds=kinds, task=task)
        check = fast.verify(scorer, pipeline, X.iloc[:SERVING_CHECK_ROWS], task=task) if scorer else None
    except Exception as exc:  # the pipeline still serves; say why the fast path does not
        logger.warning("could not compile the pipeline for serving", exc_info=True)
        return fast.describe(None, None, reason=f"{type(exc).__name__}: {exc}"[:200])
    return fast.describe(check, scorer)


def _profile(pipeline, X_train, held_out, kinds, task, random_state) -> dict | None:
    """The reference profile for drift and explanations; None (logged) rather than a failed training."""
    try:
        predictions = pipeline.predict(held_out) if hasattr(pipeline[-1], "predict") else None
        return profile.build(X_train, kinds, predictions, task, random_state=random_state)
    except Exception:
        logger.warning("could not build the model's reference profile", exc_info=True)
        return None


def _features(frame: pd.DataFrame, target: str | None, features: list[str] | None) -> list[str]:
    if features is None:
        features = [c for c in frame.columns if c != target]
    elif not isinstance(features, list) or not all(isinstance(c, str) for c in features):
        raise InvalidInput("features must be a list of column names", code="invalid_features")
    features = list(dict.fromkeys(features))
    wanted = features + ([target] if target is not None else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"unknown columns: {', '.join(missing)}", code="unknown_columns", details={"missing": missing}
        )
    if target is not None and target in features:
        raise InvalidInput(f"the target {target!r} cannot also be a feature", code="invalid_features")
    if not features:
        raise InvalidInput("no feature columns to train on", code="invalid_features")
    return features


def _target_values(y: pd.Series, task: str) -> np.ndarray:
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        if numeric.isna().any():
            raise Unprocessable("a regression target must be numeric", code="non_numeric_target")
        return numeric.to_numpy(dtype=float)
    if pd.api.types.is_bool_dtype(y) or pd.api.types.is_numeric_dtype(y):
        values = y.to_numpy()
    else:
        values = y.astype(str).to_numpy(dtype=object)
    if len(np.unique(values)) < 2:
        raise Unprocessable("the target has a single class; classification needs at least two", code="one_class_target")
    return values


def _split(X, y, task, test_size, random_state):
    if task == "classification":
        try:
            train, test = stratified_split_indices(y, test_size, random_state)
            return X.iloc[train], X.iloc[test], y[train], y[test]
        except ValueError:
            pass  # a class with one member, or fewer test rows than classes: no stratification
    return train_test_split(X, y, test_size=test_size, random_state=random_state)


def stratified_split_indices(y: np.ndarray, test_size: float, random_state) -> tuple[np.ndarray, np.ndarray]:
    """The train and test rows ``train_test_split(..., stratify=y)`` picks, computed with arrays: the same
    draws from the same generator in the same order (scikit-learn's StratifiedShuffleSplit), without its
    per-row Python list (0.5 s of 0.75 s for a million rows). ValueError where it would raise one."""
    from sklearn.model_selection._split import _validate_shuffle_split
    from sklearn.utils import check_random_state
    from sklearn.utils.extmath import _approximate_mode

    n_train, n_test = _validate_shuffle_split(len(y), test_size, None, default_test_size=0.25)
    codes, classes = pd.factorize(y, sort=True)  # np.unique's inverse and order, by hashing
    counts = np.bincount(codes, minlength=len(classes))
    if len(classes) == 0 or counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError("cannot stratify")
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    rng = check_random_state(random_state)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train, test = [], []
    for i in range(len(classes)):
        picked = members[i].take(rng.permutation(counts[i]), mode="clip")
        train.append(picked[: n_i[i]])
        test.append(picked[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _candidates(algorithm: str, task: str) -> list[AlgorithmSpec]:
    if algorithm == AUTO:
        return [resolve(name, task) for name in AUTO_CANDIDATES[task]]
    return [resolve(algorithm, task)]


def _pipeline(spec: AlgorithmSpec, params: dict | None, kinds: dict, random_state) -> Pipeline:
    return Pipeline(
        [("preprocess", build_preprocessor(kinds)), ("estimator", build_estimator(spec, params, random_state))]
    )


def _fit(pipeline: Pipeline, X, y) -> None:
    try:
        pipeline.fit(X, y)
    except KubepredictError:
        raise
    except ValueError as exc:
        raise Unprocessable(f"fitting failed: {exc}", code="fit_failed") from exc


def _search(specs, params, kinds, X, y, task, random_state, progress) -> tuple[AlgorithmSpec, dict]:
    """Score each candidate (3-fold CV, or silhouette for clustering) and return the best."""
    scores: dict[str, float | None] = {}
    for i, spec in enumerate(specs):
        progress("fitting", round(0.1 + 0.7 * i / len(specs), 4))
        try:
            pipeline = _pipeline(spec, _own_params(spec, params), kinds, random_state)
            if task == "clustering":
                labels = pipeline.fit(X).predict(X)
                score = evaluation.silhouette(pipeline, X, labels, random_state)
            else:
                folds = cross_val_score(
                    pipeline, X, y, cv=_folds(y, task, random_state), scoring=AUTO_SCORING[task], error_score=np.nan
                )
                score = float(np.nanmean(folds)) if not np.isnan(folds).all() else None
        except (InvalidInput, ValueError) as exc:
            logger.info("auto candidate %s skipped: %s", spec.name, exc)
            score = None
        scores[spec.name] = None if score is None else round(score, 6)
    ranked = [(s, value) for s in specs if (value := scores[s.name]) is not None]
    if ranked:
        best = max(ranked, key=lambda ranked_spec: ranked_spec[1])[0]  # first wins ties (catalogue order)
    else:
        # Too little data to score anyone (e.g. a handful of rows): keep the first candidate and
        # let the final fit succeed or fail on its own.
        logger.warning("auto: no candidate could be scored; falling back to %s", specs[0].name)
        best = specs[0]
    return best, {"scoring": AUTO_SCORING[task], "candidates": scores, "chosen": best.name}


def _folds(y, task: str, random_state):
    # Stratify when every class can appear in each fold; otherwise shuffled plain folds.
    if task == "classification" and np.unique(y, return_counts=True)[1].min() >= CV_FOLDS:
        return StratifiedKFold(CV_FOLDS, shuffle=True, random_state=random_state)
    return KFold(min(CV_FOLDS, len(y)), shuffle=True, random_state=random_state)


def _own_params(spec: AlgorithmSpec, params: dict | None) -> dict:
    # For "auto", each candidate takes only the params it understands (e.g. n_clusters).
    names = set(import_estimator_class(spec.estimator)._get_param_names())
    return {k: v for k, v in (params or {}).items() if k in names}


def _metrics(pipeline, task, X, y, features, random_state) -> dict[str, Any]:
    if task == "classification":
        out = evaluation.classification_metrics(pipeline, X, y)
    elif task == "regression":
        out = evaluation.regression_metrics(pipeline, X, y)
    else:
        return evaluation.clustering_metrics(pipeline, X, random_state)
    importance = evaluation.feature_importance(pipeline, X, y, features, random_state)
    if importance is not None:
        out["feature_importance"] = importance
    return out
