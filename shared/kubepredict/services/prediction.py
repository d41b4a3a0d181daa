"""Batch predictions (queued as jobs) and online predictions (answered in the request)."""

from __future__ import annotations

import time

from .. import metrics, ml
from ..codecs import native
from ..errors import Conflict, InvalidInput, Unprocessable
from ..ids import new_id
from ..runner.resources import check_resources, maximums
from ..runner.shard_plan import plan_ranges, shard_count
from ..schema import parse
from ..schema.requests import BatchPredictRequest, ForecastRequest
from . import explaining, serving
from .queueing import check_queue

ONLINE_KEYS = native.KEYS


def ready_model(svc, ref: str):
    """The catalogue row of the ready model ``ref`` names (an id, name, name@alias or name/versions/N)."""
    row = svc.catalog.get_model_row(serving.resolve_head(svc, ref).model_id)
    if row.status != "ready":
        raise Conflict(
            f"model {row.model_id} is {row.status}, not ready; wait for its training job {row.job_id}",
            code="model_not_ready",
            details={"status": row.status, "job_id": row.job_id},
        )
    return row


def submit_predict(svc, body, *, idempotency_key: str | None = None) -> tuple[dict, bool]:
    """Queue a batch prediction of a whole dataset; returns ``(job, created)``.

    ``"shards": N`` splits it into N row ranges, each scored by its own worker (see runner/shards.py).
    """
    req = parse.body(BatchPredictRequest, body)
    resources = check_resources(req.resources, maximums(svc.settings))
    model = ready_model(svc, req.model_id)
    dataset = svc.catalog.get_dataset_row(req.dataset_id)
    if model.task == "forecasting":
        from .forecast_jobs import submit_predict as submit_forecast

        state = load_pipeline(svc, model)
        return submit_forecast(svc, req, model, dataset, resources, state=state, idempotency_key=idempotency_key)
    ml.check_columns(set(dataset.column_names), model.features)
    if req.explain:
        check_explainable(svc, model, int(dataset.rows))
    shards = 1 if req.explain else shard_count(body, int(dataset.rows), svc.settings)
    check_queue(svc)
    job_id = new_id("job")
    request = {"model_id": model.model_id, "dataset_id": dataset.dataset_id, "resources": resources}
    if shards > 1:
        request["shards"] = shards
    if req.explain:
        request["explain"] = True
    job = {
        "job_id": job_id,
        "kind": "predict",
        "model_id": model.model_id,
        "dataset_id": dataset.dataset_id,
        "max_attempts": svc.settings.job_max_attempts,
        "request": request,
    }
    queued = svc.catalog.enqueue(
        job=job,
        idempotency=("predict", idempotency_key) if idempotency_key else None,
        shards=plan_ranges(int(dataset.rows), shards) if shards > 1 else None,
    )
    svc.job_queued()
    return queued


def check_explainable(svc, model, rows: int) -> None:
    """A batch ``"explain": true`` is refused up front: too many rows (400), a clustering model (422)."""
    explaining.check_rows(svc, rows)
    if model.task == "clustering":
        raise Unprocessable("clustering models cannot be explained (their output is a label)", code="not_explainable")


def load_pipeline(svc, row):
    def load():
        return ml.load_model(svc.storage.get(row.artifact_key), row.artifact_sha256)

    return svc.models.get(row.model_id, _pipeline_key(row.artifact_sha256), load)


def seed_pipeline(svc, model_id: str, sha256: str, pipeline) -> None:
    """Make ``load_pipeline`` find ``pipeline``, loaded and verified elsewhere (``ml.load_model``)."""
    svc.models.get(model_id, _pipeline_key(sha256), lambda: pipeline)


def _pipeline_key(sha256: str) -> str:
    # Keyed apart from the online path's compiled ServedModel entries (services/serving.py).
    return "pipeline:" + sha256


def predict_online(svc, body: dict) -> dict:
    """The native online answer for ``POST /function/predict`` (``model_id`` + rows; ``"explain": true``
    adds ``explanations``, see services/explaining.py)."""
    if not explaining.wanted(body):
        return infer(svc, native, body, native.model_ref(body))
    started = time.perf_counter()
    model = serving.resolve(svc, native.model_ref(body))
    table = native.decode(body, model)
    explaining.check_rows(svc, table.n_rows)
    out = native.encode(model, serving.score(svc, model, table), body)
    out["explanations"] = explaining.explain_table(svc, model, table)
    metrics.ONLINE_PREDICT_SECONDS.observe(time.perf_counter() - started)
    return out


def infer(svc, codec, body, ref: str, version: str | None = None, *, decode=None) -> dict:
    """Resolve the model, decode ``body`` with ``codec`` (or ``decode(model)``), score, encode the answer."""
    started = time.perf_counter()
    model = serving.resolve(svc, ref, version)
    result = serving.score(svc, model, codec.decode(body, model) if decode is None else decode(model))
    out = codec.encode(model, result, body)
    metrics.ONLINE_PREDICT_SECONDS.observe(time.perf_counter() - started)
    return out


def forecast_online(svc, body) -> dict:
    """``POST /function/predict/forecast``: the next steps from the stored history or the sent one."""
    import pandas as pd

    from ..ml import forecasting as fcast
    from .forecast_jobs import records

    started = time.perf_counter()
    req = parse.body(ForecastRequest, body)
    head = serving.resolve_head(svc, req.model_id)
    model = svc.catalog.get_model_row(head.model_id)
    if model.task != fcast.FORECASTING:
        raise InvalidInput(
            f"model {model.model_id} is a {model.task} model; POST /function/predict scores rows with it",
            code="not_a_forecaster",
        )
    loaded = fcast.Loaded.from_state(load_pipeline(svc, model))
    frame = pd.DataFrame.from_records(req.history) if req.history else None
    out = fcast.forecast_frame(loaded, frame, horizon=req.horizon, series=req.series)
    metrics.ONLINE_PREDICT_SECONDS.observe(time.perf_counter() - started)
    return {
        "model_id": model.model_id,
        "horizon": req.horizon or loaded.config["horizon"],
        "interval_level": loaded.config["interval_level"],
        "forecast": records(out),
    }
