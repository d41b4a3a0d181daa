"""Metrics: catalogue figures aggregated in SQL, calls counted durably for Kubeless, bounded labels."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import bottle
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from kubepredict import metrics
from kubepredict.bootstrap import bootstrap, set_default_app
from kubepredict.catalog import open_catalog, schema
from kubepredict.catalog.migrate import upgrade
from kubepredict.config import Settings
from kubepredict.ids import utcnow


@pytest.fixture
def catalog(tmp_path):
    c = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    yield c
    c.dispose()


def _job(conn, n, kind, status, *, seconds=None, started_ago=None, created_ago=0.0, rows=None):
    now = utcnow()
    started = finished = None
    if seconds is not None:
        finished = now - timedelta(seconds=1)
        started = finished - timedelta(seconds=seconds)
    if started_ago is not None:
        started = now - timedelta(seconds=started_ago)
    conn.execute(
        schema.jobs.insert().values(
            job_id=f"job_{n}",
            kind=kind,
            status=status,
            progress=0.0,
            attempt=1,
            max_attempts=1,
            request="{}",
            created_at=now - timedelta(seconds=created_ago),
            started_at=started,
            finished_at=finished,
            rows=rows,
            summary=json.dumps({"rows": rows}) if rows is not None else None,
        )
    )


def _samples(registry) -> dict:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_catalogue_figures_are_aggregated(catalog):
    with catalog.tx() as conn:
        _job(conn, 1, "train", "succeeded", seconds=0.3)
        _job(conn, 2, "train", "succeeded", seconds=4)
        _job(conn, 3, "train", "succeeded", seconds=4000)
        _job(conn, 4, "predict", "failed", seconds=12)
        _job(conn, 5, "predict", "succeeded", seconds=1.5, rows=100)
        _job(conn, 6, "predict", "succeeded", seconds=1.5, rows=50)
        _job(conn, 7, "train", "queued", created_ago=120)
        _job(conn, 8, "train", "queued", created_ago=30)
        _job(conn, 9, "predict", "running", started_ago=300)
        _job(conn, 10, "predict", "cancelled")
        for i in range(3):
            conn.execute(
                schema.outbox.insert().values(
                    event_id=f"e{i}",
                    type="t",
                    key="k",
                    payload="{}",
                    created_at=utcnow(),
                    sent_at=utcnow() if i == 0 else None,
                )
            )
    s = _samples(metrics.catalog_registry(catalog))
    assert s[("kubepredict_catalog_up", ())] == 1
    assert s[("kubepredict_jobs_total", (("kind", "train"), ("status", "succeeded")))] == 3
    assert s[("kubepredict_jobs_total", (("kind", "predict"), ("status", "failed")))] == 1
    assert s[("kubepredict_jobs_total", (("kind", "predict"), ("status", "cancelled")))] == 1
    assert s[("kubepredict_jobs_total", (("kind", "train"), ("status", "failed")))] == 0
    assert s[("kubepredict_jobs_in_queue", (("kind", "train"),))] == 2
    assert s[("kubepredict_jobs_running", (("kind", "predict"),))] == 1
    assert 119 <= s[("kubepredict_oldest_queued_job_age_seconds", (("kind", "train"),))] < 180
    assert 299 <= s[("kubepredict_oldest_running_job_age_seconds", (("kind", "predict"),))] < 360
    assert s[("kubepredict_oldest_running_job_age_seconds", (("kind", "train"),))] == 0
    assert s[("kubepredict_rows_predicted_total", ())] == 150
    assert s[("kubepredict_events_pending", ())] == 2
    train = {
        dict(k[1])["le"]: v
        for k, v in s.items()
        if k[0] == "kubepredict_job_duration_seconds_bucket" and dict(k[1])["kind"] == "train"
    }
    assert train["0.5"] == 1 and train["5.0"] == 2 and train["3600.0"] == 2 and train["+Inf"] == 3
    assert s[("kubepredict_job_duration_seconds_count", (("kind", "train"),))] == 3
    assert s[("kubepredict_job_duration_seconds_sum", (("kind", "train"),))] == pytest.approx(4004.3, abs=0.01)
    assert s[("kubepredict_job_duration_seconds_count", (("kind", "predict"),))] == 3  # failed ones count too


def test_empty_catalogue_still_exposes_every_family(catalog):
    names = {k[0] for k in _samples(metrics.catalog_registry(catalog))}
    assert {
        "kubepredict_jobs_total",
        "kubepredict_jobs_in_queue",
        "kubepredict_job_duration_seconds_count",
        "kubepredict_rows_predicted_total",
        "kubepredict_events_pending",
    } <= names


def test_a_database_outage_is_reported_not_raised(catalog):
    catalog.dispose()
    catalog.read_engine = create_engine("sqlite:////nonexistent/dir/x.db")
    s = _samples(metrics.catalog_registry(catalog))
    assert s[("kubepredict_catalog_up", ())] == 0


def test_calls_are_counted_durably_with_histogram_buckets(catalog):
    svc = type("S", (), {"catalog": catalog})()
    for seconds, code in ((0.003, 200), (0.2, 200), (0.2, 200), (120.0, 200), (0.01, 404)):
        metrics.record_call("predict", code, seconds, svc)
    other = open_catalog(str(catalog.engine.url))  # another process: only the database is shared
    s = _samples(metrics.catalog_registry(other))
    ok = (("code", "200"), ("function_name", "predict"))
    assert s[("gateway_function_invocation_total", ok)] == 4
    assert s[("gateway_function_invocation_total", (("code", "404"), ("function_name", "predict")))] == 1
    assert s[("gateway_functions_seconds_count", ok)] == 4
    assert s[("gateway_functions_seconds_sum", ok)] == pytest.approx(120.403)
    buckets = {
        dict(k[1])["le"]: v
        for k, v in s.items()
        if k[0] == "gateway_functions_seconds_bucket" and dict(k[1])["code"] == "200"
    }
    assert buckets["0.005"] == 1 and buckets["0.1"] == 1 and buckets["0.25"] == 3 and buckets["60.0"] == 3
    assert buckets["+Inf"] == 4 and len(buckets) == len(metrics.LATENCY_BUCKETS) + 1
    with catalog.ro() as conn:  # bounded: one row per function, code and bucket
        assert conn.execute(select(schema.invocations)).all().__len__() == 4
    other.dispose()


def test_recording_never_fails_a_call(catalog):
    catalog.dispose()
    catalog.engine = create_engine("sqlite:////nonexistent/dir/x.db")
    metrics.record_call("upload", 201, 0.1, type("S", (), {"catalog": catalog})())  # logs, does not raise


def test_kubeless_adapter_counts_each_call_in_the_catalogue(tmp_path):
    from functions.result.handler import handler

    svc = bootstrap(Settings(data_dir=tmp_path))
    set_default_app(svc)
    try:
        for path in ("/job_nope", "/"):
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "QUERY_STRING": "",
                "wsgi.input": io.BytesIO(b""),
                "CONTENT_LENGTH": "0",
                "SERVER_NAME": "fn",
                "SERVER_PORT": "8080",
                "wsgi.url_scheme": "http",
            }
            handler(
                {"data": b"", "extensions": {"request": bottle.BaseRequest(environ)}},
                {"function-name": "result", "timeout": 180.0, "runtime": "python3.11", "memory-limit": "0"},
            )
        s = _samples(metrics.catalog_registry(svc.catalog))
        assert s[("gateway_function_invocation_total", (("code", "404"), ("function_name", "result")))] == 1
        assert s[("gateway_function_invocation_total", (("code", "200"), ("function_name", "result")))] == 1
    finally:
        set_default_app(None)
        svc.catalog.dispose()


def test_migration_0002_backfills_rows_from_summaries(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "insert into jobs (job_id, kind, status, progress, attempt, max_attempts, request, summary, created_at)"
            " values ('job_a', 'predict', 'succeeded', 1.0, 1, 1, '{}', '{\"rows\": 42}', '2026-01-01 00:00:00'),"
            " ('job_b', 'train', 'succeeded', 1.0, 1, 1, '{}', '{}', '2026-01-01 00:00:00')"
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert dict(conn.exec_driver_sql("select job_id, rows from jobs").all()) == {"job_a": 42, "job_b": None}
        assert conn.exec_driver_sql("select count(*) from invocations").scalar_one() == 0
    engine.dispose()


def test_gateway_exposition_labels_are_bounded(tmp_path):
    from werkzeug.test import Client

    from kubepredict.runtimes.gateway import Gateway

    svc = bootstrap(Settings(data_dir=tmp_path))
    client = Client(Gateway(svc))
    client.get("/function/result/job_123")
    client.post("/function/upload", data=b"", headers={"Content-Type": "text/csv"})
    body = client.get("/metrics").get_data(as_text=True)
    allowed = {"function_name", "code", "kind", "status", "le", "outcome"}  # outcome: stream scoring, 3 values
    for family in text_string_to_metric_families(body):
        assert family.name.startswith(("gateway_", "kubepredict_")), family.name
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample
            assert not any(v.startswith(("job_", "ds_", "mdl_")) for v in sample.labels.values()), sample
    svc.catalog.dispose()


def test_the_gateway_registry_serves_the_last_registered_catalogue_once(tmp_path):
    first, second = (open_catalog(f"sqlite:///{tmp_path / f'{n}.db'}") for n in ("a", "b"))
    try:
        with second.engine.begin() as conn:
            _job(conn, 1, "train", "succeeded", seconds=1.0)
        metrics.register_catalog(first)
        metrics.register_catalog(second)
        body = metrics.exposition().decode()
        assert body.count("\nkubepredict_catalog_up ") == 1
        s = _samples(None)
        assert s[("kubepredict_jobs_total", (("kind", "train"), ("status", "succeeded")))] == 1
    finally:
        metrics.register_catalog(None)
        first.dispose()
        second.dispose()
    assert "kubepredict_catalog_up" not in metrics.exposition().decode()


def test_metrics_use_only_prometheus_client_public_api():
    from pathlib import Path

    source = Path(metrics.__file__).read_text()
    assert "_collector_to_names" not in source


def test_record_call_has_no_process_wide_fallback(catalog):
    with pytest.raises(TypeError):
        metrics.record_call("upload", 201, 0.1)  # the App is the caller's to pass
