"""Forecasting through a real gateway and workers, on both backend sets: train (backtest metrics in the
model), a batch forecast job paged and streamed as CSV, online forecasts from the stored history and
from history in the body, and every bad input answered 400 naming its column and rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv

pytestmark = [pytest.mark.e2e]


def sales(series=3, days=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    parts = []
    for s in range(series):
        y = 50 + 10 * s + 0.1 * t + 5 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.5, days)
        day = pd.date_range("2024-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
        parts.append(pd.DataFrame({"day": day, "store": f"s{s}", "sales": y.round(3)}))
    return pd.concat(parts, ignore_index=True).sample(frac=1, random_state=seed)


def _error(r, status=400) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["error"]


def test_forecast_train_batch_and_online(gateway_url):
    api = Api(gateway_url)
    ds = api.upload(frame_csv(sales()), "fc-sales")
    q = api.train(
        dataset_id=ds["dataset_id"],
        task="forecasting",
        time_column="day",
        target="sales",
        series_columns=["store"],
        horizon=7,
        algorithm="ridge",
    )
    job = api.wait(q["job_id"])
    assert job["status"] == "succeeded", job
    model = api.http.get(f"/function/train/{q['model_id']}").json()
    assert model["task"] == "forecasting" and model["algorithm"] == "ridge"
    bt = model["metrics"]["backtest"]
    assert bt["overall"]["mase"] < 1 and bt["folds"] == 3 and len(bt["per_series"]) == 3
    assert 0 <= bt["interval"]["coverage"] <= 1
    assert model["metrics"]["forecast"]["frequency"] == "D"
    assert len(model["metrics"]["chart"]["series"]) == 3

    pj = api.wait(api.predict(q["model_id"], ds["dataset_id"])["job_id"])
    assert pj["status"] == "succeeded", pj
    assert pj["summary"]["rows"] == 21 and pj["summary"]["forecast"]["horizon"] == 7
    rows = api.all_predictions(pj["job_id"], page=5)
    assert [r["row"] for r in rows] == list(range(21))
    assert rows[0]["timestamp"] == "2024-04-30" and rows[0]["store"] == "s0"
    assert all(r["lower"] <= r["prediction"] <= r["upper"] for r in rows)
    csv = api.csv_rows(pj["job_id"])
    assert list(csv[0]) == ["timestamp", "store", "prediction", "lower", "upper"] and len(csv) == 21
    assert float(csv[3]["prediction"]) == pytest.approx(rows[3]["prediction"])

    r = api.http.post("/function/predict/forecast", json={"model_id": q["model_id"], "series": ["s1"], "horizon": 3})
    assert r.status_code == 200, r.text
    online = r.json()["forecast"]
    assert [f["store"] for f in online] == ["s1"] * 3
    assert [f["prediction"] for f in online] == pytest.approx([x["prediction"] for x in rows[7:10]], abs=1e-5)
    history = [{"day": f"2025-02-{d:02d}", "store": "new", "sales": 10.0 + d % 7} for d in range(1, 29)]
    r = api.http.post("/function/predict/forecast", json={"model_id": q["model_id"], "history": history})
    assert r.status_code == 200, r.text
    assert r.json()["forecast"][0]["timestamp"] == "2025-03-01" and len(r.json()["forecast"]) == 7
    e = _error(api.http.post("/function/predict", json={"model_id": q["model_id"], "instances": [[1]]}))
    assert e["code"] == "not_a_row_model"
    e = _error(api.http.post("/function/predict/forecast", json={"model_id": q["model_id"], "horizon": 8}))
    assert e["code"] == "invalid_horizon"


def test_forecast_bad_inputs_are_400(gateway_url):
    api = Api(gateway_url)
    listed = api.http.get("/function/train/algorithms", params={"task": "forecasting"}).json()["algorithms"]
    names = [a["name"] for a in listed]
    assert names[:3] == ["auto", "naive", "seasonal_naive"] and "ridge" in names
    assert all(a["task"] == "forecasting" for a in listed)
    good = sales(2, 60).sort_values(["store", "day"]).reset_index(drop=True)
    base = {"task": "forecasting", "time_column": "day", "target": "sales", "series_columns": ["store"], "horizon": 7}

    def refused(frame, **over):
        ds = api.upload(frame_csv(frame), "fc-bad")
        return _error(api.http.post("/function/train", json={"dataset_id": ds["dataset_id"], **base, **over}))

    f = good.copy()
    f.loc[4, "day"] = "soon"
    e = refused(f)
    assert e["code"] == "invalid_timestamps" and e["details"] == {"column": "day", "rows": [4]}
    f = good.astype({"sales": object})
    f.loc[6, "sales"] = "lots"
    e = refused(f)
    assert e["code"] == "non_numeric" and e["details"] == {"column": "sales", "rows": [6]}
    f = good.copy()
    f.loc[9, "day"] = f.loc[8, "day"]
    e = refused(f)
    assert e["code"] == "duplicate_timestamps" and e["details"] == {"column": "day", "rows": [8, 9]}
    e = refused(good.iloc[:19])  # 19 days; a window of 14 and a horizon of 7 need 21
    assert e["code"] == "series_too_short" and e["details"]["series"] == ["s0"]
    for horizon in (0, 1001, "7"):
        e = refused(good, horizon=horizon)
        assert e["details"]["field"] == "horizon", e
    f = good.copy()
    f.loc[3, "day"] = "2024-01-04 06:00"
    e = refused(f, frequency="D")
    assert e["code"] == "irregular_timestamps" and e["details"]["rows"] == [3]
    e = refused(good, features=["promo"])
    assert e["code"] == "unknown_columns"
    e = refused(good, horizon=None)
    assert e["code"] == "missing_field" and e["details"]["field"] == "horizon"

    # an exogenous feature missing from the predict input
    f = good.copy()
    f["promo"] = (np.arange(len(f)) % 3 == 0).astype(int)
    ds = api.upload(frame_csv(f), "fc-exog")
    q = api.train(dataset_id=ds["dataset_id"], **base, features=["promo"], algorithm="ridge")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    e = _error(api.http.post("/function/predict", json={"model_id": q["model_id"], "dataset_id": ds["dataset_id"]}))
    assert e["code"] == "missing_feature" and e["details"]["column"] == "promo"
    no_promo = api.upload(frame_csv(good), "fc-no-promo")
    e = _error(
        api.http.post("/function/predict", json={"model_id": q["model_id"], "dataset_id": no_promo["dataset_id"]})
    )
    assert e["code"] == "missing_feature" and e["details"]["column"] == "promo"
    future = pd.DataFrame(
        {"day": list(pd.date_range("2024-03-01", periods=7).strftime("%Y-%m-%d")) * 2, "store": ["s0"] * 7 + ["s1"] * 7}
    )
    future["promo"] = 1
    fut = api.upload(frame_csv(future), "fc-future")
    pj = api.wait(api.predict(q["model_id"], fut["dataset_id"])["job_id"])
    assert pj["status"] == "succeeded" and pj["summary"]["rows"] == 14
    body = {"model_id": q["model_id"], "dataset_id": fut["dataset_id"], "shards": 2}
    e = _error(api.http.post("/function/predict", json=body))
    assert e["code"] == "invalid_field" and e["details"]["field"] == "shards"


def test_forecast_with_the_cli(gateway_url, tmp_path):
    import re
    import subprocess
    import sys

    csv = tmp_path / "sales.csv"
    csv.write_text(frame_csv(sales(2, 60)))

    def cli(*args):
        r = subprocess.run(
            [sys.executable, "-m", "kubepredict.cli", *args, "--gateway", gateway_url],
            capture_output=True,
            text=True,
            timeout=300,
            env={**__import__("os").environ, "COLUMNS": "200"},
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    ds_id = cli("upload", str(csv), "--name", "cli-sales").split()[0]
    out = cli(
        "train", ds_id, "--task", "forecasting", "--time-column", "day", "--target", "sales",
        "--series", "store", "--horizon", "5", "--algorithm", "seasonal_naive",
    )  # fmt: skip
    model_id = re.search(r"model (mdl_\w+)", out).group(1)
    out = cli("forecast", model_id, "--series", "s1", "--horizon", "2")
    assert "2024-03-01" in out and "2024-03-02" in out and "s1" in out and "s0" not in out
    job = cli("predict", model_id, "--dataset", ds_id)
    job_id = re.search(r"queued (job_\w+)", job).group(1)
    cli("result", job_id, "--csv", str(tmp_path / "out.csv"))
    import csv as csvlib

    rows = list(csvlib.reader((tmp_path / "out.csv").read_text().splitlines()))
    assert rows[0] == ["timestamp", "store", "prediction", "lower", "upper"] and len(rows) == 11
