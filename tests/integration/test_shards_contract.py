"""Sharded predict jobs in the catalogue (SQLite and a real PostgreSQL), and ranged reads of a
Parquet copy from both object stores (a shard fetches only the row groups it scores)."""

from __future__ import annotations

import io
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, text

from kubepredict.catalog import open_catalog, schema
from kubepredict.catalog.jobs import finish
from kubepredict.errors import JobCancelled
from kubepredict.runner.batch_predict import range_batches
from kubepredict.runner.shard_plan import plan_ranges
from kubepredict.services.datasets import open_parquet


def sharded(catalog, job_id: str, rows: int, shards: int, max_attempts: int = 2):
    catalog.enqueue(
        job={
            "job_id": job_id,
            "kind": "predict",
            "model_id": "mdl_x",
            "dataset_id": "ds_x",
            "max_attempts": max_attempts,
            "request": {},
        },
        shards=plan_ranges(rows, shards),
    )
    (parent,) = [r for r in catalog.claim_next(10) if r.job_id == job_id]
    return parent


def test_plan_covers_every_row_once_in_order():
    for rows, shards in ((10, 3), (5003, 3), (7, 7), (1, 4), (1_000_000, 2)):
        ranges = plan_ranges(rows, shards)
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1 and min(b - a for a, b in ranges) >= 1


def test_shards_are_claimed_once_each_and_progress_is_their_sum(catalog):
    sharded(catalog, "job_p", 1000, 4)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [(r.job_id, r.shard) for r in catalog.claim_shards(2)], range(6)))
    claimed = [k for b in batches for k in b]
    assert sorted(claimed) == [("job_p", i) for i in range(4)]
    assert catalog.claim_shards(4) == []
    catalog.shard_progress("job_p", 0, 1, 250)
    catalog.shard_progress("job_p", 1, 1, 125)
    job = catalog.get_job("job_p")
    assert job["status"] == "running" and job["progress"] == pytest.approx(0.05 + 0.9 * 375 / 1000)
    assert [s["rows_done"] for s in job["shard_status"]] == [250, 125, 0, 0]


def test_lost_shard_is_retried_alone_then_fails_the_job(catalog):
    sharded(catalog, "job_l", 100, 2, max_attempts=2)
    catalog.claim_shards(2)
    assert catalog.shard_lost("job_l", 1, 1, "worker_lost", "SIGKILL") == "queued"
    assert catalog.shard_lost("job_l", 1, 1, "worker_lost", "again") is None  # stale report: ignored
    (again,) = catalog.claim_shards(2)
    assert (again.shard, again.attempt) == (1, 2)
    assert catalog.get_shard_row("job_l", 0).attempt == 1 and catalog.get_shard_row("job_l", 0).status == "running"
    assert catalog.shard_lost("job_l", 1, 2, "worker_lost", "SIGKILL") == "failed"
    job = catalog.get_job("job_l")
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost" and "shard 1" in job["error"]["message"]
    assert [s["status"] for s in job["shard_status"]] == ["cancelled", "failed"]
    assert not catalog.shard_heartbeat("job_l", 0, 1)
    with pytest.raises(JobCancelled):
        catalog.shard_progress("job_l", 0, 1, 10)


def test_pod_claims_its_attempt_and_late_reports_are_ignored(catalog):
    sharded(catalog, "job_k", 100, 2)
    assert catalog.claim_shard_attempt("job_k", 0, 1, worker="pod-a") is not None
    assert catalog.claim_shard_attempt("job_k", 0, 1, worker="pod-b") is None  # same attempt twice
    assert catalog.claim_shard_attempt("job_k", 0, 2, worker="pod-c").attempt == 2  # the index's retry takes over
    assert catalog.shard_lost("job_k", 0, 1, "pod_failed", "late") is None
    assert catalog.get_shard_row("job_k", 0).status == "running"


def test_cancel_stops_every_shard(catalog):
    sharded(catalog, "job_c", 100, 3)
    catalog.claim_shards(2)
    catalog.cancel("job_c")
    assert [s.status for s in catalog.list_shards("job_c")] == ["cancelled"] * 3
    assert catalog.claim_shards(3) == [] and not catalog.shard_heartbeat("job_c", 0, 1)
    assert catalog.shard_statuses([("job_c", 0), ("job_c", 1)]) == {
        ("job_c", 0): ("cancelled", 1),
        ("job_c", 1): ("cancelled", 1),
    }


def _store(catalog, job_id: str, first_row: int, values: list) -> None:
    """One stored prediction batch (no probabilities), as a shard's scoring loop writes it."""
    catalog.insert_prediction_batch(job_id, first_row, pa.array(values), pa.nulls(len(values), pa.list_(pa.float64())))


def test_last_shard_finishes_the_job_once(catalog):
    sharded(catalog, "job_f", 10, 2)
    catalog.claim_shards(2)
    for _shard, (a, b) in enumerate(plan_ranges(10, 2)):
        catalog.clear_shard_predictions("job_f", a, b)
        _store(catalog, "job_f", a, ["yes" if i % 2 else "no" for i in range(a, b)])
    assert catalog.succeed_shard("job_f", 0, 1, summary={"rows": 5, "class_counts": {'"no"': 3, '"yes"': 2}}) is False
    assert catalog.completed_sharded_jobs() == []
    assert catalog.succeed_shard("job_f", 1, 1, summary={"rows": 5, "class_counts": {'"yes"': 3, '"no"': 2}}) is True
    assert catalog.completed_sharded_jobs() == ["job_f"]
    catalog.clear_shard_predictions("job_f", 100, 200)  # another range: nothing of ours is touched
    assert catalog.count_predictions("job_f") == 10


def test_retried_shard_clears_only_its_own_batches(catalog):
    """A shard's retry deletes the batches it wrote (several, by row range) and none of its neighbours'."""
    sharded(catalog, "job_r", 30, 3)
    for a, b in plan_ranges(30, 3):  # each shard wrote its rows in batches of 4
        for first in range(a, b, 4):
            _store(catalog, "job_r", first, [float(i) for i in range(first, min(first + 4, b))])
    catalog.clear_shard_predictions("job_r", 10, 20)
    assert catalog.count_predictions("job_r") == 20
    assert [r.row for r in catalog.page_predictions("job_r", offset=0, limit=100)] == list(range(10)) + list(
        range(20, 30)
    )
    for first in range(10, 20, 4):  # the retry writes its range again, in other batch sizes
        _store(catalog, "job_r", first, [float(i) for i in range(first, min(first + 4, 20))])
    rows = catalog.page_predictions("job_r", offset=0, limit=100)
    assert [(r.row, r.prediction) for r in rows] == [(i, float(i)) for i in range(30)]
    assert [first for first, _ in catalog.iter_prediction_tables("job_r")] == [0, 4, 8, 10, 14, 18, 20, 24, 28]


def test_ranged_reads_fetch_only_the_row_groups_a_shard_needs(storage):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40_000, 6)), columns=[f"c{i}" for i in range(6)])
    frame["k"] = np.array(["a", "b", "c"])[rng.integers(0, 3, len(frame))]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=5_000)
    stored = storage.put_bytes("datasets/ds_r/data.parquet", buf.getvalue())
    svc = SimpleNamespace(storage=storage)
    dataset = SimpleNamespace(parquet_key=stored.key)
    whole = pd.read_parquet(io.BytesIO(storage.get(stored.key)))
    for a, b in plan_ranges(len(frame), 3) + [(4_999, 5_001), (39_999, 40_000), (7_000, 7_003)]:
        for size in (1_000, 3_001):
            with open_parquet(svc, dataset) as parquet:
                batches = list(range_batches(parquet, a, b, columns=["c1", "k"], batch_size=size))
            assert all(0 < len(x) <= size for x in batches)
            part = pa.Table.from_batches(batches).to_pandas()
            pd.testing.assert_frame_equal(part, whole[["c1", "k"]].iloc[a:b].reset_index(drop=True))
    with storage.open_ranged(stored.key) as f:
        f.seek(-8, io.SEEK_END)
        assert f.read(8)[-4:] == b"PAR1"
    if hasattr(storage, "client"):  # S3: count the bytes the ranged GETs actually brought
        f = storage.open_ranged(stored.key)
        table = pq.ParquetFile(f).read_row_groups([2])
        assert table.num_rows == 5_000
        assert f.bytes_fetched < stored.size / 3, (f.bytes_fetched, stored.size)
        f.close()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_dispatcher_finishes_a_job_whose_last_shard_worker_died_after_its_shard(catalog, task):
    """All shards succeeded, nobody marked the job: the dispatcher's round does, once, with one summary."""
    from kubepredict.config import Settings
    from kubepredict.runner.base import JobRunner
    from kubepredict.runner.dispatcher import Dispatcher

    class NoWorkers(JobRunner):
        def submit(self, spec):
            raise AssertionError("nothing to start")

        def cancel(self, job_id):
            pass

    catalog.enqueue(
        job={
            "job_id": "job_t",
            "kind": "train",
            "model_id": f"mdl_{task}",
            "dataset_id": "ds_x",
            "max_attempts": 1,
            "request": {},
        },
        model={
            "model_id": f"mdl_{task}",
            "name": f"m-{task}",
            "task": task,
            "algorithm": "x",
            "params": {},
            "features": [],
            "target": "y",
            "dataset_id": "ds_x",
            "job_id": "job_t",
        },
    )
    catalog.cancel("job_t")
    catalog.enqueue(
        job={
            "job_id": "job_z",
            "kind": "predict",
            "model_id": f"mdl_{task}",
            "dataset_id": "ds_x",
            "max_attempts": 2,
            "request": {},
        },
        shards=plan_ranges(6, 2),
    )
    catalog.claim_next(1)
    catalog.claim_shards(2)
    values = ["a", "b", "a", "a", "c", "b"] if task == "classification" else [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    for shard, (a, b) in enumerate(plan_ranges(6, 2)):
        _store(catalog, "job_z", a, values[a:b])
        counts = {}
        for v in values[a:b]:
            counts[json.dumps(v)] = counts.get(json.dumps(v), 0) + 1
        catalog.succeed_shard(
            "job_z", shard, 1, summary={"rows": b - a, **({"class_counts": counts} if task == "classification" else {})}
        )
    dispatcher = Dispatcher(catalog, NoWorkers(), Settings(data_dir="/nonexistent", max_concurrent_jobs=0))
    dispatcher.tick()
    dispatcher.tick()
    job = catalog.get_job("job_z")
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["summary"]["rows"] == 6
    assert job["summary"]["shards"] == 2
    if task == "classification":
        assert job["summary"]["class_counts"] == {"a": 3, "b": 2, "c": 1}
    else:
        assert job["summary"]["quantiles"] == {"min": 0.5, "p25": 1.75, "p50": 3.0, "p75": 4.25, "max": 5.5}
        assert job["summary"]["mean"] == 3.0
    assert [t for t, _ in catalog.events_for("job_z")].count("kubepredict.job.succeeded") == 1


def test_shards_started_together_share_the_cores(catalog):
    """The local dispatcher hands each shard worker its share: min(shards, concurrent workers) split
    the cores (runner/limits.local_limits), so two shards on two cores get one core each."""
    from kubepredict.config import Settings
    from kubepredict.runner.base import JobRunner
    from kubepredict.runner.dispatcher import Dispatcher

    class Recording(JobRunner):
        def __init__(self):
            self.specs = []

        def submit(self, spec):
            self.specs.append(spec)

        def cancel(self, job_id):
            pass

        def running(self):
            return len(self.specs)

    sharded(catalog, "job_three", 30, 3)
    runner = Recording()
    Dispatcher(catalog, runner, Settings(max_concurrent_jobs=2))._start_shards()
    assert [(s.shard, s.share) for s in runner.specs] == [(0, 2), (1, 2)]


def test_dispatcher_leaves_a_succeeded_shards_worker_to_finish_the_job(catalog):
    """The last shard's worker writes the job's summary after its shard is marked succeeded: a dispatcher
    round in between must not terminate it (it did, and the worker logged a crash mid-summary). A shard
    cancelled or requeued to a later attempt is still stopped."""
    from kubepredict.config import Settings
    from kubepredict.runner.base import JobRunner
    from kubepredict.runner.dispatcher import Dispatcher

    class Running(JobRunner):
        def __init__(self, shards):
            self.shards, self.cancelled = shards, []

        def submit(self, spec):
            raise AssertionError("nothing to start")

        def cancel(self, job_id):
            pass

        def cancel_shard(self, job_id, shard):
            self.cancelled.append((job_id, shard))

        def running(self):
            return len(self.shards)

        def running_shards(self):
            return self.shards

    sharded(catalog, "job_fin", 100, 3)
    catalog.claim_shards(3)
    catalog.succeed_shard("job_fin", 0, 1, summary={"rows": 34})
    catalog.shard_lost("job_fin", 2, 1, "worker_lost", "gone")  # requeued: its old worker must stop
    runner = Running([("job_fin", 0, 1), ("job_fin", 1, 1), ("job_fin", 2, 1)])
    Dispatcher(catalog, runner, Settings(data_dir="/nonexistent", max_concurrent_jobs=0)).tick()
    assert runner.cancelled == [("job_fin", 2)]
    catalog.cancel("job_fin")
    runner.cancelled.clear()
    Dispatcher(catalog, runner, Settings(data_dir="/nonexistent", max_concurrent_jobs=0)).tick()
    assert sorted(runner.cancelled) == [("job_fin", 0), ("job_fin", 1), ("job_fin", 2)]


def test_cancel_while_a_shard_reports_progress_waits_instead_of_deadlocking(postgres_url):
    """Cancel locks the job, then its shards; a shard's progress report must take them in the same order.

    Taken the other way (shard, then job), PostgreSQL broke the cycle by aborting one of the two with a
    deadlock error: a 503 for the user's cancel, or a lost progress report.
    """
    catalog = open_catalog(postgres_url)
    try:
        sharded(catalog, "job_d", 100, 2)
        catalog.claim_shards(2)
        with ThreadPoolExecutor(1) as pool, catalog.tx() as conn:  # the pool waits for the report after commit
            parent = conn.execute(select(schema.jobs).where(schema.jobs.c.job_id == "job_d").with_for_update()).one()
            report = pool.submit(catalog.shard_progress, "job_d", 0, 1, 10)
            deadline = time.monotonic() + 10
            while not _waiting_on_a_lock(catalog) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not report.done(), "the progress report did not wait for the job the cancel holds"
            finish(conn, parent, "cancelled", None)  # as JobsRepo.cancel does: the job, then its shards
        with pytest.raises(JobCancelled):
            report.result(timeout=10)
        job = catalog.get_job("job_d")
        assert job["status"] == "cancelled" and [s["status"] for s in job["shard_status"]] == ["cancelled"] * 2
    finally:
        catalog.dispose()


def _waiting_on_a_lock(catalog) -> bool:
    with catalog.ro() as conn:
        return bool(
            conn.execute(
                text("select count(*) from pg_stat_activity where wait_event_type = 'Lock' and pid <> pg_backend_pid()")
            ).scalar()
        )
