"""Many users at once: 16 trains then 16 predictions submitted together; nothing lost, nothing mixed up."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
N = 16


def tagged_dataset(i: int, rows: int) -> pd.DataFrame:
    """Labels carry the dataset's tag (``d7_low``), so every prediction names the model that made it."""
    rng = np.random.default_rng(i)
    x = rng.normal(size=rows)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=rows), "label": np.where(x > 0, f"d{i}_high", f"d{i}_low")})


def run_concurrency(base_urls: str | list[str], n: int = N) -> list[str]:
    """Run the scenario, spreading calls round-robin over the given gateways; returns every job id."""
    apis = [Api(u) for u in ([base_urls] if isinstance(base_urls, str) else base_urls)]

    def pick(i: int) -> Api:
        return apis[i % len(apis)]

    api = apis[0]
    with ThreadPoolExecutor(n) as pool:
        train_sets = list(
            pool.map(lambda i: pick(i).upload(frame_csv(tagged_dataset(i, 60 + i)), f"conc-{i}"), range(n))
        )
        # The predict sets have a distinct row count per dataset, so each result also names its input.
        predict_sets = list(
            pool.map(
                lambda i: pick(i + 1).upload(
                    frame_csv(tagged_dataset(100 + i, 30 + i).drop(columns=["label"])), f"conc-new-{i}"
                ),
                range(n),
            )
        )
        queued = list(
            pool.map(
                lambda i: pick(i).train(
                    dataset_id=train_sets[i]["dataset_id"],
                    target="label",
                    algorithm="logistic_regression",
                    name=f"conc-{i}",
                ),
                range(n),
            )
        )
        trained = list(pool.map(lambda q: api.wait(q["job_id"], timeout=600), queued))
        assert [j["status"] for j in trained] == ["succeeded"] * n, [j.get("error") for j in trained]
        assert len({q["job_id"] for q in queued}) == n and len({q["model_id"] for q in queued}) == n
        for i, job in enumerate(trained):
            assert job["model_id"] == queued[i]["model_id"] and job["dataset_id"] == train_sets[i]["dataset_id"]
            assert sorted(job["metrics"]["labels"]) == [f"d{i}_high", f"d{i}_low"]

        pjobs = list(
            pool.map(lambda i: pick(i + 1).predict(queued[i]["model_id"], predict_sets[i]["dataset_id"]), range(n))
        )
        done = list(pool.map(lambda q: api.wait(q["job_id"], timeout=600), pjobs))
    mismatches = 0
    for i, job in enumerate(done):
        assert job["status"] == "succeeded", job
        rows = api.all_predictions(job["job_id"], page=500)
        expected_rows = 30 + i
        if len(rows) != expected_rows or job["summary"]["rows"] != expected_rows:
            mismatches += 1
        mismatches += sum(not str(r["prediction"]).startswith(f"d{i}_") for r in rows)
    assert mismatches == 0
    listing = api.http.get("/function/result", params={"kind": "predict", "limit": 1000}).json()
    assert {j["job_id"] for j in pjobs} <= {j["job_id"] for j in listing["jobs"]}
    assert all(j["attempt"] == 1 for j in trained + done)
    return [q["job_id"] for q in queued + pjobs]


def test_sixteen_trains_and_sixteen_predictions_at_once(gateway_url):
    run_concurrency(gateway_url)


def test_two_gateway_replicas_on_one_catalogue(start_gateway, tmp_path):
    """Two gateways (two dispatchers, 2 workers each = 4 worker processes) share one catalogue and store:
    32 jobs, each started exactly once (one job.started event, attempt 1), zero mismatches."""
    from kubepredict.catalog import open_catalog

    data = tmp_path / "replicas"
    env = {"KUBEPREDICT_MAX_CONCURRENT_JOBS": "2"}
    a, b = start_gateway(env, data_dir=data), start_gateway(env, data_dir=data)
    job_ids = run_concurrency([a.url, b.url])
    url = a.env.get("KUBEPREDICT_DATABASE_URL") or f"sqlite:///{data / 'kubepredict.db'}"
    catalog = open_catalog(url, create=False)
    try:
        for job_id in job_ids:
            types = [t for t, _ in catalog.events_for(job_id)]
            assert types.count("kubepredict.job.started") == 1, (job_id, types)
            assert types.count("kubepredict.job.succeeded") == 1, (job_id, types)
        attempts = {
            json.loads(p)["data"].get("attempt")
            for job_id in job_ids
            for t, p in catalog.events_for(job_id)
            if t == "kubepredict.job.started"
        }
        assert attempts == {1}
    finally:
        catalog.dispose()
