"""Forecasting through the platform: queue and run train and predict jobs of task ``forecasting``, answer
online forecasts, page and stream their results (the core is ``ml/forecasting.py``).

The input rules are checked when the request arrives (the dataset's columns are read and validated
the way the job will), so a bad file is a 400 naming the column and rows, not a failed job.

A forecast batch job stores, per series, ``horizon`` rows (``timestamp``, the series columns,
``prediction``, ``lower``, ``upper``) as prediction batches; the job's summary says ``forecast`` so
``result`` pages and streams them with those columns (there are no input rows to join).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import ml
from ..errors import InvalidInput
from ..ids import new_id
from ..ml import forecast_features as ff
from ..ml import forecasting as fcast
from ..runner.batch_predict import peak_rss_mib
from ..runner.limits import clamp_parallelism
from ..runner.resources import check_resources, maximums
from .datasets import clean_name, load_frame
from .queueing import check_queue, enqueue_train

logger = logging.getLogger(__name__)


def _columns(request: dict) -> list[str]:
    return list(
        dict.fromkeys([request["time_column"], *request["series_columns"], request["target"], *request["features"]])
    )


def submit_train(svc, req, *, idempotency_key: str | None = None) -> tuple[dict, bool]:
    """Queue a forecasting train job after validating the dataset the way the job will."""
    for name in ("time_column", "target", "horizon"):
        if getattr(req, name) is None:
            raise InvalidInput(
                f"'{name}' is required when task is 'forecasting'", code="missing_field", details={"field": name}
            )
    algorithm, params = req.algorithm or "auto", req.params or {}
    resources = check_resources(req.resources, maximums(svc.settings))
    dataset = svc.catalog.get_dataset_row(req.dataset_id)
    request = {
        "dataset_id": req.dataset_id,
        "task": fcast.FORECASTING,
        "time_column": req.time_column,
        "target": req.target,
        "series_columns": req.series_columns or [],
        "features": req.features or [],
        "horizon": req.horizon,
        "frequency": req.frequency,
        "season_length": req.season_length,
        "lags": req.lags,
        "interval_level": req.interval_level or fcast.DEFAULT_LEVEL,
        "backtest_folds": req.backtest_folds or fcast.DEFAULT_FOLDS,
        "algorithm": algorithm,
        "params": params,
        "random_state": req.random_state,
        "resources": resources,
    }
    if request["target"] in request["features"] or request["time_column"] in request["features"]:
        raise InvalidInput(
            "the target and the time column cannot also be features",
            code="invalid_field",
            details={"field": "features"},
        )
    missing = [c for c in _columns(request) if c not in dataset.column_names]
    if missing:
        raise InvalidInput(
            f"unknown columns: {', '.join(missing)}",
            code="unknown_columns",
            details={"missing": missing, "columns": dataset.column_names},
        )
    fcast.check_series_columns(request["series_columns"])
    fcast.check_algorithm(algorithm, params, req.random_state)
    panel = ff.build_panel(
        load_frame(svc, dataset, columns=_columns(request)),
        time_column=req.time_column,
        target=req.target,
        series_columns=request["series_columns"],
        features=request["features"],
        frequency=req.frequency,
    )
    fcast.plan(panel, req.target, req.horizon, req.season_length, req.lags, request["backtest_folds"])
    check_queue(svc)
    model_id, job_id = new_id("mdl"), new_id("job")
    name = clean_name(req.name, f"{dataset.name}-forecast-{algorithm.rsplit('.', 1)[-1]}")
    model = {
        "model_id": model_id,
        "name": name,
        "task": fcast.FORECASTING,
        "algorithm": algorithm,
        "params": params,
        "features": request["features"],
        "target": req.target,
        "dataset_id": req.dataset_id,
        "job_id": job_id,
    }
    return enqueue_train(svc, model, request, idempotency_key)


def run_train(svc, job, *, cpus: int | None = None) -> None:
    """The worker's side: backtest, fit, store the forecaster's artefact and metrics."""
    catalog, request = svc.catalog, job.request

    def progress(stage: str, value: float) -> None:
        catalog.progress(job.job_id, job.attempt, stage, value)

    progress("loading", 0.02)
    dataset = catalog.get_dataset_row(job.dataset_id)
    frame = load_frame(svc, dataset, columns=_columns(request))
    result = fcast.train_forecast(
        frame,
        time_column=request["time_column"],
        target=request["target"],
        series_columns=request["series_columns"],
        horizon=request["horizon"],
        frequency=request.get("frequency"),
        features=request["features"],
        algorithm=request["algorithm"],
        params=clamp_parallelism(request.get("params") or {}, cpus),
        season_length=request.get("season_length"),
        lags=request.get("lags"),
        level=request.get("interval_level") or fcast.DEFAULT_LEVEL,
        folds=request.get("backtest_folds") or fcast.DEFAULT_FOLDS,
        random_state=request.get("random_state", 0),
        progress=progress,
    )
    progress("saving", 0.95)
    stored = svc.storage.put_bytes(f"models/{job.model_id}/model.skops", ml.dump_model(result.state))
    catalog.succeed_train(
        job.job_id,
        job.attempt,
        model_id=job.model_id,
        model_fields={
            "task": fcast.FORECASTING,
            "algorithm": result.algorithm,
            "estimator": result.estimator,
            "params": result.params,
            "features": request["features"],
            "kinds": {},
            "target": request["target"],
            "metrics": result.metrics,
            "classes": None,
            "artifact_key": stored.key,
            "artifact_sha256": stored.sha256,
        },
    )


def _config(model) -> dict:
    return (model.metrics or {}).get("forecast") or {}


def _input_columns(model, columns: list[str]) -> list[str]:
    cfg = _config(model)
    wanted = [cfg["time_column"], *cfg["series_columns"], *(model.features or [])]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InvalidInput(
            f"the dataset misses the column(s) {', '.join(missing)} this forecaster needs",
            code="missing_feature" if missing[0] in (model.features or []) else "unknown_columns",
            details={"column": missing[0], "missing": missing, "columns": columns},
        )
    return wanted + ([model.target] if model.target in columns else [])


def submit_predict(
    svc, req, model, dataset, resources, *, state, idempotency_key: str | None = None
) -> tuple[dict, bool]:
    """Queue a forecast: the dataset is recent history (rows with a target) and/or future exogenous values.

    ``state``: the model's loaded artefact.
    """
    if (req_shards := getattr(req, "shards", None)) and req_shards > 1:
        raise InvalidInput(
            "a forecast job runs as one job (its series are forecast together); leave 'shards' out",
            code="invalid_field",
            details={"field": "shards"},
        )
    columns = _input_columns(model, dataset.column_names)
    loaded = fcast.Loaded.from_state(state)
    fcast.prepare(loaded, load_frame(svc, dataset, columns=columns))  # every input rule, now
    check_queue(svc)
    job = {
        "job_id": new_id("job"),
        "kind": "predict",
        "model_id": model.model_id,
        "dataset_id": dataset.dataset_id,
        "max_attempts": svc.settings.job_max_attempts,
        "request": {"model_id": model.model_id, "dataset_id": dataset.dataset_id, "resources": resources},
    }
    queued = svc.catalog.enqueue(job=job, idempotency=("predict", idempotency_key) if idempotency_key else None)
    svc.job_queued()
    return queued


def run_predict(svc, job, model, state) -> None:
    """Forecast every series and store the rows as prediction batches (one per series' horizon block)."""
    catalog = svc.catalog
    started = time.perf_counter()
    dataset = catalog.get_dataset_row(job.dataset_id)
    frame = load_frame(svc, dataset, columns=_input_columns(model, dataset.column_names))
    catalog.progress(job.job_id, job.attempt, "forecasting", 0.3)
    out = fcast.forecast_frame(fcast.Loaded.from_state(state), frame)
    catalog.clear_predictions(job.job_id)
    batch = 65_536
    for start in range(0, len(out), batch):
        part = out.iloc[start : start + batch]
        values = part["prediction"].to_numpy(dtype=float)
        extra = {c: pa.array(part[c].tolist()) for c in part.columns if c != "prediction"}
        catalog.insert_prediction_batch(
            job.job_id,
            start,
            pa.array(values, mask=~np.isfinite(values)),
            pa.nulls(len(part), type=pa.list_(pa.float64())),
            extra=extra,
        )
    cfg = _config(model)
    summary = {
        "rows": len(out),
        "forecast": {
            "horizon": cfg.get("horizon"),
            "series": int(len(out) // max(cfg.get("horizon") or 1, 1)),
            "columns": list(out.columns),
            "interval_level": cfg.get("interval_level"),
        },
        "mean": round(float(np.nanmean(out["prediction"])), 6) if len(out) else None,
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": peak_rss_mib(),
    }
    catalog.succeed_predict(job.job_id, job.attempt, summary=summary)


def records(out: pd.DataFrame) -> list[dict]:
    rows = out.astype(object).where(out.notna(), None).to_dict(orient="records")
    for r in rows:
        for k in ("prediction", "lower", "upper"):
            if r[k] is not None:
                r[k] = round(float(r[k]), 6)
    return rows


# ---- results --------------------------------------------------------------------------------------
def page(svc, job_id: str, *, offset: int, limit: int) -> list[dict]:
    """Rows ``offset … offset + limit - 1`` of a forecast job (forecasts are small: one pass over batches)."""
    rows: list[dict] = []
    end = offset + limit
    for first, table in svc.catalog.iter_prediction_tables(job_id):
        if first >= end:
            break
        if first + table.num_rows <= offset:
            continue
        lo = max(offset, first) - first
        part = table.slice(lo, min(end, first + table.num_rows) - first - lo).drop_columns(["probabilities"])
        rows += [{"row": first + lo + i, **r} for i, r in enumerate(part.to_pylist())]
    return rows
