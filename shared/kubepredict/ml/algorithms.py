"""The algorithm catalogue: names -> scikit-learn estimators, checked at request time."""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, ClusterMixin, RegressorMixin

from kubepredict.errors import InvalidInput

logger = logging.getLogger(__name__)

TASKS = ("classification", "regression", "clustering")
AUTO = "auto"


@dataclass(frozen=True)
class AlgorithmSpec:
    """One trainable algorithm: a name within a task and the estimator class it builds."""

    name: str
    task: str
    estimator: str
    default_params: dict = field(default_factory=dict, hash=False, compare=False)


def _spec(name: str, task: str, estimator: str, **defaults: Any) -> AlgorithmSpec:
    return AlgorithmSpec(name, task, estimator, defaults)


_C, _R, _K = TASKS
# Birch is deliberately absent: skops refuses to persist it (its CF-tree nodes are not
# serialisable), so a Birch model could be trained but never saved or served.
ALGORITHMS: tuple[AlgorithmSpec, ...] = (
    _spec("logistic_regression", _C, "sklearn.linear_model.LogisticRegression", max_iter=1000),
    _spec("random_forest", _C, "sklearn.ensemble.RandomForestClassifier", n_estimators=100),
    _spec("hist_gradient_boosting", _C, "sklearn.ensemble.HistGradientBoostingClassifier"),
    _spec("svm", _C, "sklearn.svm.SVC", probability=True),
    _spec("knn", _C, "sklearn.neighbors.KNeighborsClassifier", n_neighbors=5),
    _spec("decision_tree", _C, "sklearn.tree.DecisionTreeClassifier"),
    _spec("naive_bayes", _C, "sklearn.naive_bayes.GaussianNB"),
    _spec("mlp", _C, "sklearn.neural_network.MLPClassifier", max_iter=500),
    _spec("linear_regression", _R, "sklearn.linear_model.LinearRegression"),
    _spec("ridge", _R, "sklearn.linear_model.Ridge", alpha=1.0),
    _spec("lasso", _R, "sklearn.linear_model.Lasso", alpha=1.0),
    _spec("random_forest", _R, "sklearn.ensemble.RandomForestRegressor", n_estimators=100),
    _spec("hist_gradient_boosting", _R, "sklearn.ensemble.HistGradientBoostingRegressor"),
    _spec("svr", _R, "sklearn.svm.SVR"),
    _spec("knn", _R, "sklearn.neighbors.KNeighborsRegressor", n_neighbors=5),
    _spec("kmeans", _K, "sklearn.cluster.KMeans", n_clusters=3),
    _spec("gaussian_mixture", _K, "sklearn.mixture.GaussianMixture", n_components=3),
    _spec("minibatch_kmeans", _K, "sklearn.cluster.MiniBatchKMeans", n_clusters=3),
)

# Names a reader might expect but that cannot be served, with the reason given back.
UNSUPPORTED = {
    ("birch", _K): "Birch models cannot be saved safely (skops does not support them); use kmeans or minibatch_kmeans"
}

# Fast candidates tried by algorithm "auto", in order of preference on ties.
AUTO_CANDIDATES: dict[str, tuple[str, ...]] = {
    _C: ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    _R: ("ridge", "random_forest", "hist_gradient_boosting"),
    _K: ("kmeans", "gaussian_mixture", "minibatch_kmeans"),
}

#: Ceilings on training parameters, whatever the estimator: values above them are refused with a 400
#: before a job is queued (``check_ceilings``). Generous for real work, far from what would exhaust a
#: machine; a job's memory limit and deadline (runner/limits.py) bound the rest. ``n_jobs`` is also
#: clamped at run time to the job's CPU allowance.
PARAM_CEILINGS: dict[str, int] = {
    "n_estimators": 5_000,  # forests, boosting, bagging
    "max_iter": 100_000,  # linear models, MLP, k-means, mixtures, histogram boosting
    "max_fun": 100_000,  # MLP with lbfgs
    "n_iter_no_change": 10_000,
    "n_jobs": 1_024,
    "n_neighbors": 10_000,
    "n_clusters": 10_000,
    "n_components": 1_000,
    "n_init": 1_000,
    "max_leaf_nodes": 100_000,
    "max_depth": 1_000,
    "cache_size": 4_096,  # SVM kernel cache, MiB
    "batch_size": 1_000_000,
    "degree": 20,  # polynomial kernels
}
#: ``hidden_layer_sizes`` (MLP): units per layer, units over all layers, and layers.
MAX_LAYER_UNITS = 4_096
MAX_TOTAL_UNITS = 16_384
MAX_LAYERS = 64

_BY_KEY = {(s.name, s.task): s for s in ALGORITHMS}
_TASK_MIXIN = {_C: ClassifierMixin, _R: RegressorMixin, _K: ClusterMixin}
# Public dotted path only: "sklearn." then segments that start with a letter (no dunders, no privates).
_DOTTED = re.compile(r"^sklearn(\.[A-Za-z][A-Za-z0-9_]*)+$")
# Distinct-value rule of infer_task (documented there).
REGRESSION_MIN_UNIQUE = 20
REGRESSION_MIN_UNIQUE_RATIO = 0.05


def check_task(task: str) -> str:
    """Return ``task`` if it is one of TASKS, else raise InvalidInput(code="invalid_task")."""
    if task not in TASKS:
        raise InvalidInput(
            f"unknown task {task!r}; expected one of {', '.join(TASKS)}",
            code="invalid_task",
            details={"known": list(TASKS)},
        )
    return task


def param_ceilings(names=None) -> dict:
    """The documented ceilings (``PARAM_CEILINGS`` plus ``hidden_layer_sizes``), for the params in ``names``."""
    table: dict = {
        **PARAM_CEILINGS,
        "hidden_layer_sizes": {
            "units_per_layer": MAX_LAYER_UNITS,
            "total_units": MAX_TOTAL_UNITS,
            "layers": MAX_LAYERS,
        },
    }
    return {k: v for k, v in table.items() if names is None or k in names}


def list_algorithms(task: str | None = None) -> list[dict]:
    """Return the catalogue as JSON-safe dicts (plus one "auto" entry per task), for GET /train/algorithms.

    Each entry lists the ceilings of the params its estimator takes (``param_ceilings``).
    """
    tasks = TASKS if task is None else (check_task(task),)
    out = []
    for t in tasks:
        out.append(
            {
                "name": AUTO,
                "task": t,
                "estimator": None,
                "default_params": {},
                "candidates": list(AUTO_CANDIDATES[t]),
                "param_ceilings": param_ceilings({n for c in AUTO_CANDIDATES[t] for n in _param_names(_BY_KEY[c, t])}),
            }
        )
        out.extend(
            {
                "name": s.name,
                "task": s.task,
                "estimator": s.estimator,
                "default_params": dict(s.default_params),
                "param_ceilings": param_ceilings(_param_names(s)),
            }
            for s in ALGORITHMS
            if s.task == t
        )
    return out


def _param_names(spec: AlgorithmSpec) -> set[str]:
    return set(import_estimator_class(spec.estimator)._get_param_names())


def _too_big(name: str, value: Any, ceiling: int, what: str = "") -> InvalidInput:
    return InvalidInput(
        f"params.{name}{what} = {value} is above the ceiling of {ceiling}; such a job would exhaust the machine",
        code="param_ceiling",
        details={"field": f"params.{name}", "value": value, "ceiling": ceiling},
    )


def check_ceilings(params: dict) -> None:
    """Refuse params above the documented ceilings (InvalidInput, code ``param_ceiling``)."""
    for name, ceiling in PARAM_CEILINGS.items():
        value = params.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > ceiling:
            raise _too_big(name, value, ceiling)
    layers = params.get("hidden_layer_sizes")
    if layers is None:
        return
    sizes = [layers] if isinstance(layers, (int, float)) and not isinstance(layers, bool) else layers
    if not isinstance(sizes, list):
        return  # scikit-learn's own validation answers for other shapes
    numbers = [v for v in sizes if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(sizes) > MAX_LAYERS:
        raise _too_big("hidden_layer_sizes", f"{len(sizes)} layers", MAX_LAYERS, " (layers)")
    if numbers and max(numbers) > MAX_LAYER_UNITS:
        raise _too_big("hidden_layer_sizes", max(numbers), MAX_LAYER_UNITS, " (units in a layer)")
    if sum(numbers) > MAX_TOTAL_UNITS:
        raise _too_big("hidden_layer_sizes", sum(numbers), MAX_TOTAL_UNITS, " (units over all layers)")


def _unknown(algorithm: str, task: str, why: str = "") -> InvalidInput:
    known = [s.name for s in ALGORITHMS if s.task == task]
    msg = (
        f"unknown algorithm {algorithm!r} for task {task!r}{why}; use one of "
        f"{', '.join(known)}, 'auto', or a public scikit-learn class such as "
        "'sklearn.ensemble.ExtraTreesClassifier'"
    )
    return InvalidInput(msg, code="unknown_algorithm", details={"known": known + [AUTO]})


def import_estimator_class(path: str) -> type[BaseEstimator]:
    """Import a public ``sklearn.*`` estimator class by dotted path; raise LookupError/TypeError otherwise."""
    if not isinstance(path, str) or not _DOTTED.match(path):
        raise LookupError(f"{path!r} is not a public sklearn dotted name")
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"no module {module_name!r}") from exc
    cls = getattr(module, attr, None)
    if not (inspect.isclass(cls) and issubclass(cls, BaseEstimator)) or inspect.isabstract(cls):
        raise TypeError(f"{path!r} is not a scikit-learn estimator class")
    if not cls.__module__.startswith("sklearn."):
        raise TypeError(f"{path!r} is defined outside scikit-learn")
    return cls


def resolve(algorithm: str, task: str) -> AlgorithmSpec:
    """Resolve a catalogue name or a public ``sklearn.*`` class path for ``task`` into an AlgorithmSpec."""
    check_task(task)
    if not isinstance(algorithm, str):
        raise _unknown(repr(algorithm), task)
    spec = _BY_KEY.get((algorithm, task))
    if spec is not None:
        return spec
    if (algorithm, task) in UNSUPPORTED:
        raise InvalidInput(UNSUPPORTED[algorithm, task], code="unsupported_algorithm")
    if not algorithm.startswith("sklearn."):
        raise _unknown(algorithm, task)
    try:
        cls = import_estimator_class(algorithm)
    except (LookupError, TypeError) as exc:
        raise _unknown(algorithm, task, f" ({exc})") from None
    if not issubclass(cls, _TASK_MIXIN[task]):
        raise _unknown(algorithm, task, f" (not a {task} estimator)")
    if task == _K and not hasattr(cls, "predict"):
        raise InvalidInput(
            f"{algorithm} cannot assign new rows to clusters (no predict), so it cannot be served",
            code="unsupported_algorithm",
        )
    return AlgorithmSpec(algorithm, task, algorithm, {})


def _check_json_params(value: Any, path: str = "params") -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} must be a finite number", code="invalid_params")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_json_params(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"{path} keys must be strings", code="invalid_params")
            _check_json_params(v, f"{path}.{k}")
        return
    raise InvalidInput(f"{path} must hold JSON values only, not {type(value).__name__}", code="invalid_params")


def build_estimator(spec: AlgorithmSpec, params: dict | None, random_state: int | None = None):
    """Build an unfitted estimator: defaults overlaid by ``params``, validated by scikit-learn itself."""
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object", code="invalid_params")
    _check_json_params(params)
    check_ceilings(params)
    cls = import_estimator_class(spec.estimator)
    valid = sorted(cls._get_param_names())
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InvalidInput(
            f"unknown params for {spec.name}: {', '.join(unknown)}",
            code="invalid_params",
            details={"unknown": unknown, "valid": valid},
        )
    merged = {**spec.default_params, **params}
    if random_state is not None and "random_state" in valid and "random_state" not in params:
        merged["random_state"] = random_state
    try:
        estimator = cls(**merged)
        if hasattr(estimator, "_validate_params"):
            estimator._validate_params()
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"invalid params for {spec.name}: {exc}", code="invalid_params", details={"error": str(exc)}
        ) from exc
    _check_persistable(estimator, spec.name)
    return estimator


def _check_persistable(estimator, name: str) -> None:
    # skops refuses some estimator types outright (e.g. Birch); find out before training, not after.
    import skops.io as sio
    from skops.io.exceptions import UnsupportedTypeException

    try:
        sio.dumps(estimator)
    except UnsupportedTypeException as exc:
        raise InvalidInput(f"{name} cannot be saved safely (skops: {exc})", code="unsupported_algorithm") from exc


def validate_request(algorithm: str, task: str | None, params: dict | None) -> None:
    """Check a train request's algorithm/task/params before it is queued (raises InvalidInput)."""
    if task is not None:
        check_task(task)
    if algorithm == AUTO:
        if params is not None and not isinstance(params, dict):
            raise InvalidInput("params must be a JSON object", code="invalid_params")
        check_ceilings(params or {})
        return
    if task is not None:
        build_estimator(resolve(algorithm, task), params)
        return
    # Task to be inferred later (classification or regression): accept if valid for either.
    first: InvalidInput | None = None
    for candidate in (_C, _R):
        try:
            build_estimator(resolve(algorithm, candidate), params)
            return
        except InvalidInput as exc:
            first = first or exc
    assert first is not None  # both candidates raised
    raise first


def infer_task(y: pd.Series) -> str:
    """Guess the task from a target column.

    Rule: a numeric (non-bool) target is regression when it holds non-integer values, or
    more than 20 distinct values that are also more than 5% of the non-missing rows;
    everything else (strings, bools, few integer codes) is classification.
    """
    y = y.dropna()
    if y.empty or pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return _C
    values = y.to_numpy(dtype=float)
    if (values != values.round()).any():
        return _R
    unique = y.nunique()
    if unique > REGRESSION_MIN_UNIQUE and unique > REGRESSION_MIN_UNIQUE_RATIO * len(y):
        return _R
    return _C
