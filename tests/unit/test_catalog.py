"""Catalogue behaviour: atomic claims, idempotency, lost workers, events written with each change."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubepredict.catalog import open_catalog
from kubepredict.errors import Conflict, JobCancelled, JobNotFound


@pytest.fixture
def catalog(tmp_path):
    c = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    yield c
    c.dispose()


def job(job_id: str, max_attempts: int = 2) -> dict:
    return {
        "job_id": job_id,
        "kind": "predict",
        "model_id": "mdl_x",
        "dataset_id": "ds_x",
        "max_attempts": max_attempts,
        "request": {},
    }


def types(catalog, key):
    return [t for t, _ in catalog.events_for(key)]


def test_each_job_is_claimed_exactly_once_under_contention(catalog):
    for i in range(20):
        catalog.enqueue(job=job(f"job_{i}"))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: [r.job_id for r in catalog.claim_next(5)], range(8)))
    claimed = [j for batch in results for j in batch]
    assert sorted(claimed) == sorted(f"job_{i}" for i in range(20))
    assert all(catalog.get_job(f"job_{i}")["attempt"] == 1 for i in range(20))


def test_idempotency_key_returns_same_job(catalog):
    first, created = catalog.enqueue(job=job("job_a"), idempotency=("train", "k1"))
    again, created2 = catalog.enqueue(job=job("job_b"), idempotency=("train", "k1"))
    assert created and not created2 and again["job_id"] == "job_a"
    with pytest.raises(JobNotFound):
        catalog.get_job("job_b")
    assert types(catalog, "job_a") == ["kubepredict.job.queued"]


def test_model_versions_count_per_name(catalog):
    for i in range(3):
        model = {
            "model_id": f"mdl_{i}",
            "name": "same",
            "task": "classification",
            "algorithm": "auto",
            "params": {},
            "features": [],
            "target": "y",
            "dataset_id": "ds_x",
            "job_id": f"job_{i}",
        }
        catalog.enqueue(job={**job(f"job_{i}"), "kind": "train", "model_id": f"mdl_{i}"}, model=model)
    assert sorted(catalog.get_model(f"mdl_{i}")["version"] for i in range(3)) == [1, 2, 3]


def test_lost_worker_requeues_then_fails(catalog):
    catalog.enqueue(job=job("job_l", max_attempts=2))
    row = catalog.claim("job_l")
    assert catalog.lost("job_l", row.attempt, "worker_lost", "killed") == "queued"
    row = catalog.claim("job_l")
    assert row.attempt == 2
    assert catalog.lost("job_l", 1, "worker_lost", "stale report") is None  # an old attempt changes nothing
    assert catalog.lost("job_l", 2, "worker_lost", "killed again") == "failed"
    j = catalog.get_job("job_l")
    assert j["status"] == "failed" and j["error"] == {"code": "worker_lost", "message": "killed again"}
    assert types(catalog, "job_l") == [
        "kubepredict.job.queued",
        "kubepredict.job.started",
        "kubepredict.job.started",
        "kubepredict.job.failed",
    ]


def test_lost_report_after_an_outcome_is_ignored(catalog):
    catalog.enqueue(job=job("job_o"))
    row = catalog.claim("job_o")
    catalog.succeed_predict("job_o", row.attempt, summary={"rows": 0})
    assert catalog.lost("job_o", row.attempt, "worker_lost", "exit 0") is None
    assert catalog.get_job("job_o")["status"] == "succeeded"


def test_cancel_stops_progress_and_finished_jobs_conflict(catalog):
    catalog.enqueue(job=job("job_c"))
    row = catalog.claim("job_c")
    catalog.progress("job_c", row.attempt, "scoring", 0.5)
    assert catalog.cancel("job_c")["status"] == "cancelled"
    with pytest.raises(JobCancelled):
        catalog.progress("job_c", row.attempt, "scoring", 0.6)
    assert not catalog.heartbeat("job_c", row.attempt)
    with pytest.raises(Conflict):
        catalog.cancel("job_c")


def test_outbox_in_commit_order_and_marking(catalog):
    catalog.enqueue(job=job("job_e"))
    row = catalog.claim("job_e")
    catalog.succeed_predict("job_e", row.attempt, summary={"rows": 3})
    pending = catalog.pending_events()
    assert [p.type for p in pending] == [
        "kubepredict.job.queued",
        "kubepredict.job.started",
        "kubepredict.job.succeeded",
    ]
    assert all(json.loads(p.payload)["specversion"] == "1.0" for p in pending)
    catalog.mark_sent([pending[0].seq])
    assert catalog.pending_count() == 2


def test_head_revision_constant_matches_the_migration_scripts(tmp_path):
    """migrate.HEAD_REVISION lets current schemas skip Alembic; it must name the scripts' real head."""
    from alembic.script import ScriptDirectory

    from kubepredict.catalog.migrate import HEAD_REVISION, alembic_config, current_revision

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION
    c = open_catalog(f"sqlite:///{tmp_path / 'head.db'}")
    assert current_revision(c.engine) == HEAD_REVISION
    c.dispose()


def test_predictions_stored_per_row_before_0004_are_migrated_into_batches(tmp_path):
    """A catalogue from before prediction batches keeps every prediction, in order, with its values."""
    from sqlalchemy import create_engine, text

    from kubepredict.catalog.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (job_id, kind, status, progress, attempt, max_attempts, request, "
                "created_at) VALUES ('job_old', 'predict', 'succeeded', 1, 1, 1, '{}', '2026-01-01')"
            )
        )
        conn.execute(
            text("INSERT INTO predictions (job_id, row, prediction, probabilities) VALUES (:j, :r, :p, :q)"),
            [{"j": "job_old", "r": r, "p": json.dumps(f"c{r % 2}"), "q": json.dumps([0.5, 0.5])} for r in range(2500)],
        )
    upgrade(engine)
    engine.dispose()
    c = open_catalog(url)
    assert c.count_predictions("job_old") == 2500
    page = c.page_predictions("job_old", offset=1998, limit=3)
    assert [(r.row, r.prediction, r.probabilities) for r in page] == [
        (1998, "c0", [0.5, 0.5]),
        (1999, "c1", [0.5, 0.5]),
        (2000, "c0", [0.5, 0.5]),
    ]
    c.dispose()


def _predict_with_batches(catalog, job_id: str):
    import pyarrow as pa

    catalog.enqueue(job=job(job_id))
    row = catalog.claim(job_id, worker="w")
    for first in (0, 10):
        catalog.insert_prediction_batch(job_id, first, pa.array([1] * 10), pa.nulls(10, type=pa.list_(pa.float64())))
    assert catalog.count_predictions(job_id) == 20
    return row


def test_a_failed_predict_job_keeps_no_partial_predictions(catalog):
    """Issue 16: a job that fails mid-way (e.g. its prediction writes met a full disk) leaves no rows behind."""
    row = _predict_with_batches(catalog, "job_f")
    assert catalog.fail("job_f", row.attempt, "insufficient_storage", "the database's disk is full")
    assert catalog.get_job("job_f")["status"] == "failed"
    assert catalog.count_predictions("job_f") == 0


def test_a_failure_recorded_on_a_full_disk_leaves_its_rows_to_the_sweep(catalog, monkeypatch):
    from kubepredict.errors import InsufficientStorage

    row = _predict_with_batches(catalog, "job_g")
    real = type(catalog.jobs)._fail

    def full_when_dropping(self, *args, drop_predictions, **kw):
        if drop_predictions:
            raise InsufficientStorage("the database's disk is full")
        return real(self, *args, drop_predictions=drop_predictions, **kw)

    monkeypatch.setattr(type(catalog.jobs), "_fail", full_when_dropping)
    assert catalog.fail("job_g", row.attempt, "insufficient_storage", "full")
    assert catalog.get_job("job_g")["status"] == "failed" and catalog.count_predictions("job_g") == 20
    assert catalog.drop_failed_predictions() == 2 and catalog.count_predictions("job_g") == 0
