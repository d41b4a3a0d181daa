"""Validate a train request cheaply, then queue model + job + event in one transaction."""

from __future__ import annotations

from .. import ml
from ..errors import InvalidInput, Unprocessable
from ..ids import new_id
from ..ml.profile import profile_key
from ..runner.resources import check_resources, maximums
from ..schema import parse
from ..schema.requests import TrainRequest
from . import promotion
from .datasets import clean_name, load_frame
from .queueing import check_queue, enqueue_train


def submit_train(svc, body, *, idempotency_key: str | None = None) -> tuple[dict, bool]:
    """Queue a training job; returns ``(job, created)``."""
    req = parse.body(TrainRequest, body)
    if req.task == "forecasting":
        from .forecast_jobs import submit_train as submit_forecast

        return submit_forecast(svc, req, idempotency_key=idempotency_key)
    dataset_id, task, target, features = req.dataset_id, req.task, req.target, req.features
    algorithm = req.algorithm or "auto"
    params = req.params or {}
    resources = check_resources(req.resources, maximums(svc.settings))
    test_size, random_state = req.test_size, req.random_state

    dataset = svc.catalog.get_dataset_row(dataset_id)
    columns = dataset.column_names
    if target is None and task != "clustering":
        raise InvalidInput(
            "'target' is required unless task is 'clustering'", code="missing_field", details={"field": "target"}
        )
    wanted = ([target] if target else []) + (features or [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InvalidInput(
            f"unknown columns: {', '.join(missing)}",
            code="unknown_columns",
            details={"missing": missing, "columns": columns},
        )
    if target and features and target in features:
        raise InvalidInput("the target cannot also be a feature", code="invalid_field", details={"field": "features"})
    if task == "clustering" and target:
        target = None
    features = features or [c for c in columns if c != target]
    if not features:
        raise InvalidInput("no feature columns left to learn from", code="invalid_field", details={"field": "features"})

    if target:
        y = load_frame(svc, dataset, columns=[target])[target].dropna()
        task = task or ml.infer_task(y)
        if task == "classification" and y.nunique() < 2:
            raise Unprocessable(
                f"target '{target}' has only one class; classification needs at least two",
                code="one_class_target",
                details={"target": target},
            )
        if task == "regression" and not _numeric(y):
            raise Unprocessable(
                f"target '{target}' is not numeric; regression needs numbers",
                code="non_numeric_target",
                details={"target": target},
            )
    ml.validate_request(algorithm, task, params)
    promote = None
    if req.promote:
        promote = promotion.validate(svc, req.promote, task=task or "clustering", features=features, target=target)
    check_queue(svc)

    model_id, job_id = new_id("mdl"), new_id("job")
    name = clean_name(req.name, f"{dataset.name}-{algorithm.rsplit('.', 1)[-1]}")
    request = {
        "dataset_id": dataset_id,
        "target": target,
        "features": features,
        "task": task,
        "algorithm": algorithm,
        "params": params,
        "test_size": test_size,
        "random_state": random_state,
        "resources": resources,
    }
    if promote:
        request["promote"] = promote
    model = {
        "model_id": model_id,
        "name": name,
        "task": task,
        "algorithm": algorithm,
        "params": params,
        "features": features,
        "target": target,
        "dataset_id": dataset_id,
        "job_id": job_id,
    }
    return enqueue_train(svc, model, request, idempotency_key)


def inferred_task(svc, dataset_id: str, target: str) -> str:
    """The task ``submit_train`` infers when ``target`` is the label and no task is given (``ml.infer_task``
    on its non-missing values), so clients such as the web page show the server's answer, not a guess."""
    dataset = svc.catalog.get_dataset_row(dataset_id)
    columns = dataset.column_names
    if target not in columns:
        raise InvalidInput(
            f"unknown columns: {target}", code="unknown_columns", details={"missing": [target], "columns": columns}
        )
    y = load_frame(svc, dataset, columns=[target])[target].dropna()
    return ml.infer_task(y)


def _numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def delete_model(svc, model_id: str) -> None:
    """Delete a model and its artifact; online serving answers 404 for it from the next request on."""
    row = svc.catalog.delete_model(model_id)
    if row.artifact_key:
        svc.storage.delete(row.artifact_key)
    svc.storage.delete(profile_key(model_id))
