"""bench/soak.py's table and consistency check, on a real SQLite catalogue and folder store (no server)."""

from __future__ import annotations

import io
from pathlib import Path

from sqlalchemy import update

from bench.soak import Acks, Stats, consistency, orphans, p99
from kubepredict.bootstrap import bootstrap
from kubepredict.catalog import schema
from kubepredict.config import Settings
from kubepredict.services.datasets import upload_dataset
from kubepredict.services.training import submit_train

IRIS = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()


def test_stats_rows_count_served_errors_and_p99():
    stats = Stats()
    for i in range(100):
        stats.record("predict", 200, i / 1000)
    stats.record("predict", 503, 1.0)
    stats.record("predict", "conn", 0.5)
    stats.record("upload", 201, 0.2)
    assert stats.rows() == [("predict", "100", "503×1, conn×1", "500 ms"), ("upload", "1", "-", "200 ms")]
    assert p99([]) == 0.0 and p99([0.1] * 99 + [5.0]) == 5.0


def test_consistency_finds_missing_rows_stale_jobs_orphans_and_rows_of_failed_jobs(tmp_path):
    svc = bootstrap(Settings(data_dir=tmp_path))
    try:
        ds = upload_dataset(svc, io.BytesIO(IRIS), name="iris")["dataset_id"]
        job, _ = submit_train(svc, {"dataset_id": ds, "target": "species", "algorithm": "logistic_regression"})
        acks = Acks(datasets={ds}, models={job["model_id"]}, jobs={job["job_id"]: "train"})
        # a queued job with no worker: neither final nor alive
        problems = consistency(svc, acks, heartbeat_timeout=30)
        assert problems == [f"job {job['job_id']} is queued without a fresh heartbeat (last None)"]

        with svc.catalog.tx() as conn:
            conn.execute(update(schema.jobs).where(schema.jobs.c.job_id == job["job_id"]).values(status="failed"))
            conn.execute(
                schema.prediction_batches.insert().values(job_id=job["job_id"], first_row=0, rows=1, data=b"x")
            )
        svc.storage.put_bytes("models/mdl_gone/model.skops", b"x")
        acks.datasets.add("ds_never")
        problems = consistency(svc, acks, heartbeat_timeout=30)
        assert problems[0] == "1 acknowledged dataset(s) missing: ds_never"
        assert problems[1] == f"failed job {job['job_id']} has 1 prediction batch(es)"
        assert problems[2].startswith("1 orphaned object(s) in the store: models/mdl_gone/model.skops (no model row)")
        assert orphans(svc) == ["models/mdl_gone/model.skops"]
    finally:
        svc.catalog.dispose()


def test_job_outcomes_count_statuses_codes_and_retries(tmp_path):
    from bench.soak import job_outcomes

    svc = bootstrap(Settings(data_dir=tmp_path))
    try:
        ds = upload_dataset(svc, io.BytesIO(IRIS), name="iris")["dataset_id"]
        jobs = [
            submit_train(svc, {"dataset_id": ds, "target": "species", "algorithm": "logistic_regression"})[0]
            for _ in range(3)
        ]
        with svc.catalog.tx() as conn:
            conn.execute(
                update(schema.jobs)
                .where(schema.jobs.c.job_id == jobs[0]["job_id"])
                .values(status="failed", attempt=2, error={"code": "heartbeat_timeout", "message": "lost"})
            )
            conn.execute(
                update(schema.jobs)
                .where(schema.jobs.c.job_id == jobs[1]["job_id"])
                .values(status="succeeded", attempt=1)
            )
        assert (
            job_outcomes(svc) == "1 failed (heartbeat_timeout×1), 1 queued, 1 succeeded; 1 retried after a lost worker"
        )
    finally:
        svc.catalog.dispose()
