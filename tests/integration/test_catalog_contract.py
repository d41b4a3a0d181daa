"""One contract for the catalogue, run against SQLite and a real PostgreSQL."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubepredict.catalog import open_catalog
from kubepredict.errors import Conflict, DatasetNotFound


def queued(catalog, n: int, prefix: str = "job"):
    for i in range(n):
        catalog.enqueue(
            job={
                "job_id": f"{prefix}_{i}",
                "kind": "predict",
                "model_id": "mdl_x",
                "dataset_id": "ds_x",
                "max_attempts": 1,
                "request": {},
            }
        )


def test_schema_migrates_twice_safely(catalog):
    catalog.create_schema()
    catalog.ping()


def test_dataset_roundtrip_and_delete_conflict(catalog):
    view = catalog.add_dataset(
        dataset_id="ds_1",
        name="d",
        rows=3,
        size_bytes=10,
        sha256="0" * 64,
        columns=[{"name": "a"}],
        preview=[{"a": 1}],
        object_key="k",
        parquet_key="p",
    )
    assert catalog.get_dataset("ds_1", preview=True)["preview"] == [{"a": 1}] and view["rows"] == 3
    catalog.enqueue(
        job={
            "job_id": "job_d",
            "kind": "predict",
            "model_id": "m",
            "dataset_id": "ds_1",
            "max_attempts": 1,
            "request": {},
        }
    )
    with pytest.raises(Conflict):
        catalog.delete_dataset("ds_1")
    catalog.cancel("job_d")
    catalog.delete_dataset("ds_1")
    with pytest.raises(DatasetNotFound):
        catalog.get_dataset("ds_1")
    assert [t for t, _ in catalog.events_for("ds_1")] == ["kubepredict.dataset.uploaded"]


def test_claim_next_never_double_claims(catalog):
    queued(catalog, 40)
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [r.job_id for r in catalog.claim_next(3)], range(30)))
    claimed = [j for b in batches for j in b]
    assert len(claimed) == len(set(claimed)) == 40


def test_predictions_bulk_write_page_and_stream(catalog):
    """Batches stored out of order read back in row order; pages cross batch boundaries; values keep their type."""
    import pyarrow as pa

    queued(catalog, 1, "pj")
    probas = pa.array([[0.25, 0.75]] * 10_000, type=pa.list_(pa.float64()))
    for first in (10_000, 0, 20_000):  # shards may finish in any order
        n = 5_000 if first == 20_000 else 10_000
        labels = pa.array([f"c{i % 3}" for i in range(first, first + n)])
        catalog.insert_prediction_batch("pj_0", first, labels, probas.slice(0, n))
    assert catalog.count_predictions("pj_0") == 25_000
    page = catalog.page_predictions("pj_0", offset=9_998, limit=5)
    assert [r.row for r in page] == [9_998, 9_999, 10_000, 10_001, 10_002]
    assert [r.prediction for r in page] == ["c2", "c0", "c1", "c2", "c0"] and page[0].probabilities == [0.25, 0.75]
    assert [r.row for r in catalog.page_predictions("pj_0", offset=24_998, limit=10)] == [24_998, 24_999]
    streamed = [r.row for batch in catalog.iter_predictions("pj_0", batch=4000) for r in batch]
    assert streamed == list(range(25_000))
    catalog.clear_predictions("pj_0")
    assert catalog.count_predictions("pj_0") == 0


def test_events_follow_each_state_change(catalog):
    queued(catalog, 1, "ev")
    row = catalog.claim("ev_0")
    catalog.progress("ev_0", row.attempt, "scoring", 0.5)
    catalog.fail("ev_0", row.attempt, "bad", "bad data")
    types = [t for t, _ in catalog.events_for("ev_0")]
    assert types == ["kubepredict.job.queued", "kubepredict.job.started", "kubepredict.job.failed"]
    assert catalog.pending_count() == 3


def _claim_worker(url: str, out) -> None:
    c = open_catalog(url, create=False)
    got = []
    while True:
        rows = c.claim_next(2, worker="p")
        if not rows:
            break
        got += [r.job_id for r in rows]
    out.put(got)
    c.dispose()


def test_four_processes_claim_32_jobs_exactly_once(request, tmp_path):
    """Separate processes, separate connections: 32 jobs, 4 claimers, every job claimed once (both databases)."""
    for url in (f"sqlite:///{tmp_path / 'mp.db'}", request.getfixturevalue("postgres_url")):
        c = open_catalog(url)
        queued(c, 32, "mp")
        c.dispose()
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_claim_worker, args=(url, out)) for _ in range(4)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        claimed = [j for r in results for j in r]
        assert sorted(claimed) == sorted(f"mp_{i}" for i in range(32)), url


def test_singleton_lease_is_exclusive_until_released(catalog, tmp_path):
    other = open_catalog(str(catalog.engine.url.render_as_string(hide_password=False)), create=False)
    try:
        first = catalog.singleton("outbox-relay")
        assert first is not None
        assert other.singleton("outbox-relay") is None
        assert other.singleton("something-else") is not None
        first.release()
        again = other.singleton("outbox-relay")
        assert again is not None
        again.release()
    finally:
        other.dispose()


def test_prediction_text_survives_bulk_write_verbatim(catalog):
    """Labels with backslashes, tabs, quotes and non-ASCII are stored and read back unchanged."""
    import pyarrow as pa

    queued(catalog, 1, "esc")
    labels = ["a\\b", "tab\there", 'quote"s', "naïve ✓", "line\nbreak", "\\N"]
    probas = [[0.1, 0.9] if i % 2 else None for i in range(len(labels))]
    catalog.insert_prediction_batch("esc_0", 0, pa.array(labels), pa.array(probas, type=pa.list_(pa.float64())))
    back = catalog.page_predictions("esc_0", offset=0, limit=10)
    assert [r.prediction for r in back] == labels
    assert [r.probabilities for r in back] == probas


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migration_chain_keeps_old_predictions_and_adds_shards(request, tmp_path, dialect):
    """0002 -> 0003 (job_shards) -> 0004 (prediction batches) on a catalogue holding per-row predictions;
    then down to 0002 and up again: both migrations apply in order, on SQLite and PostgreSQL."""
    import json

    from sqlalchemy import create_engine, inspect, text

    from kubepredict.catalog.migrate import HEAD_REVISION, current_revision, upgrade

    url = f"sqlite:///{tmp_path / 'chain.db'}" if dialect == "sqlite" else request.getfixturevalue("postgres_url")
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
            [{"j": "job_old", "r": r, "p": json.dumps(r * 0.5), "q": None} for r in range(300)],
        )
    upgrade(engine, "0003")
    assert {"job_shards", "predictions"} <= set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION == "0005"
    names = set(inspect(engine).get_table_names())
    assert {"job_shards", "prediction_batches", "model_aliases"} <= names and "predictions" not in names
    engine.dispose()
    c = open_catalog(url)
    assert c.get_job("job_old")["shards"] is None
    assert [(r.row, r.prediction) for r in c.page_predictions("job_old", offset=0, limit=1000)] == [
        (r, r * 0.5) for r in range(300)
    ]
    c.dispose()
    engine = create_engine(url)
    from alembic import command

    from kubepredict.catalog.migrate import alembic_config

    command.downgrade(alembic_config(engine), "0002")
    names = set(inspect(engine).get_table_names())
    assert "predictions" in names and not {"job_shards", "prediction_batches", "model_aliases"} & names
    upgrade(engine)
    assert current_revision(engine) == "0005"
    engine.dispose()
