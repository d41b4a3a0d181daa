"""Machine learning core: algorithm catalogue, preprocessing, training, safe artifacts, scoring."""

from kubepredict.ml.algorithms import (
    ALGORITHMS,
    TASKS,
    AlgorithmSpec,
    build_estimator,
    infer_task,
    list_algorithms,
    resolve,
    validate_request,
)
from kubepredict.ml.artifacts import dump_model, load_model, sha256_hex
from kubepredict.ml.preprocess import build_preprocessor, coerce_frame, column_kinds
from kubepredict.ml.scoring import ScoreResult, check_columns, json_values, score
from kubepredict.ml.training import TrainResult, train

__all__ = [
    "ALGORITHMS",
    "TASKS",
    "AlgorithmSpec",
    "ScoreResult",
    "TrainResult",
    "build_estimator",
    "build_preprocessor",
    "check_columns",
    "coerce_frame",
    "column_kinds",
    "dump_model",
    "infer_task",
    "json_values",
    "list_algorithms",
    "load_model",
    "resolve",
    "score",
    "sha256_hex",
    "train",
    "validate_request",
]
