"""One batch prediction job of 1,000,000 rows lands whole in the catalogue (SQLite, and PostgreSQL via COPY)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROWS = 1_000_000


def test_million_row_batch_prediction(start_gateway, backend, record_property):
    gw = start_gateway({"KUBEPREDICT_MAX_UPLOAD_BYTES": str(256 * 1024 * 1024)})
    api = Api(gw.url, timeout=600)
    rng = np.random.default_rng(0)
    small = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
    small["y"] = np.where(small["a"] + small["b"] > 0, "pos", "neg")
    ds = api.upload(frame_csv(small), "million-train")
    q = api.train(dataset_id=ds["dataset_id"], target="y", algorithm="logistic_regression")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    big = pd.DataFrame(rng.normal(size=(ROWS, 3)).round(4), columns=["a", "b", "c"])
    t = time.perf_counter()
    new = api.upload(frame_csv(big), "million")
    upload_s = time.perf_counter() - t
    assert new["rows"] == ROWS
    t = time.perf_counter()
    job = api.wait(api.predict(q["model_id"], new["dataset_id"])["job_id"], timeout=900)
    wall = time.perf_counter() - t
    assert job["status"] == "succeeded", job
    assert job["summary"]["rows"] == ROWS
    assert sum(job["summary"]["class_counts"].values()) == ROWS
    last = api.job(job["job_id"], offset=ROWS - 2, limit=5)["predictions"]
    assert last["total"] == ROWS and [r["row"] for r in last["rows"]] == [ROWS - 2, ROWS - 1]
    rate = ROWS / wall
    record_property("rows_per_second", round(rate))
    print(
        f"\n[{backend}] 1,000,000-row batch prediction: {wall:.1f} s end to end = {rate:,.0f} rows/s "
        f"(job scoring+writing {job['summary'].get('seconds')} s); upload {upload_s:.1f} s"
    )
