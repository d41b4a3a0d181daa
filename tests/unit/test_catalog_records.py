"""The catalogue keeps its storage format to itself: JSON columns come out decoded, as typed records;
nothing outside ``catalog/`` decodes a catalogue column; public job views carry no ``request``."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

import kubepredict
from kubepredict.catalog import Catalog, open_catalog, schema
from kubepredict.catalog.records import DatasetRecord, JobRecord, ModelRecord, ShardRecord
from kubepredict.catalog.schema import JSONText

PACKAGE = Path(kubepredict.__file__).parent
BENCH = Path(__file__).resolve().parents[2] / "bench"  # benchmarks read the catalogue too
JSON_COLUMNS = {c.name for t in schema.metadata.tables.values() for c in t.columns if isinstance(c.type, JSONText)}
DECODERS = {"loads"}  # json.loads, orjson.loads, a bare ``loads`` imported from either


def _decodes_a_column(node: ast.Call) -> str | None:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in DECODERS:
        return None
    for arg in node.args:
        if isinstance(arg, ast.Attribute) and arg.attr in JSON_COLUMNS:
            return arg.attr
        if isinstance(arg, ast.Subscript) and isinstance(arg.slice, ast.Constant) and arg.slice.value in JSON_COLUMNS:
            return str(arg.slice.value)
    return None


def test_the_json_columns_are_known():
    assert {
        "request",
        "features",
        "kinds",
        "classes",
        "params",
        "columns",
        "preview",
        "summary",
        "error",
        "metrics",
    } == JSON_COLUMNS


def test_no_module_outside_the_catalogue_decodes_a_catalogue_column():
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), *BENCH.rglob("*.py")]):
        rel = path.relative_to(PACKAGE if path.is_relative_to(PACKAGE) else BENCH.parent)
        if rel.parts[0] == "catalog":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and (column := _decodes_a_column(node)):
                found.append(f"{rel}:{node.lineno} decodes {column}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "pop"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "request"
            ):
                found.append(f"{rel}:{node.lineno} pops 'request' from a view")
    assert found == []


def test_json_columns_stay_text_so_no_migration_is_needed():
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        for table in schema.metadata.tables.values():
            ddl = str(CreateTable(table).compile(dialect=dialect))
            for column in table.columns:
                if isinstance(column.type, JSONText):
                    assert f"{column.name} TEXT" in ddl, (dialect.name, table.name, column.name)


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    c = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield c
    c.dispose()


def _world(catalog: Catalog) -> None:
    catalog.add_dataset(
        dataset_id="ds_1",
        name="d",
        rows=4,
        size_bytes=10,
        sha256="0" * 64,
        columns=[{"name": "a", "dtype": "float64"}, {"name": "y", "dtype": "int64"}],
        preview=[{"a": 1.5, "y": 1}],
        object_key="k",
        parquet_key="p",
    )
    request = {"dataset_id": "ds_1", "target": "y", "features": ["a"], "resources": {"limits": {"cpu": "1"}}}
    catalog.enqueue(
        job={
            "job_id": "job_t",
            "kind": "train",
            "model_id": "mdl_1",
            "dataset_id": "ds_1",
            "max_attempts": 2,
            "request": request,
        },
        model={
            "model_id": "mdl_1",
            "name": "m",
            "task": "classification",
            "algorithm": "a",
            "params": {"C": 1.0},
            "features": ["a"],
            "target": "y",
            "dataset_id": "ds_1",
            "job_id": "job_t",
        },
    )
    job = catalog.claim("job_t")
    assert job is not None
    catalog.succeed_train(
        "job_t",
        job.attempt,
        model_id="mdl_1",
        model_fields={
            "features": ["a"],
            "kinds": {"a": "numeric"},
            "classes": [0, 1],
            "metrics": {"accuracy": 1.0},
            "params": {"C": 1.0},
            "artifact_key": "models/mdl_1/model.skops",
            "artifact_sha256": "1" * 64,
        },
    )
    catalog.enqueue(
        job={
            "job_id": "job_p",
            "kind": "predict",
            "model_id": "mdl_1",
            "dataset_id": "ds_1",
            "max_attempts": 2,
            "request": {"resources": {}},
        },
        shards=[(0, 2), (2, 4)],
    )


def test_reads_return_records_with_decoded_json(catalog):
    _world(catalog)
    dataset = catalog.get_dataset_row("ds_1")
    assert isinstance(dataset, DatasetRecord) and dataset.column_names == ["a", "y"]
    assert dataset.preview == [{"a": 1.5, "y": 1}]
    model = catalog.get_model_row("mdl_1")
    assert isinstance(model, ModelRecord)
    assert (model.params, model.features, model.kinds, model.classes, model.metrics) == (
        {"C": 1.0},
        ["a"],
        {"a": "numeric"},
        [0, 1],
        {"accuracy": 1.0},
    )
    job = catalog.get_job_row("job_t")
    assert isinstance(job, JobRecord) and job.request["features"] == ["a"]
    assert job.resources == {"limits": {"cpu": "1"}} and job.metrics == {"accuracy": 1.0}
    (claimed,) = [j for j in catalog.claim_next(5) if j.job_id == "job_p"]
    assert isinstance(claimed, JobRecord) and claimed.shards == 2
    shards = catalog.claim_shards(2)
    assert all(isinstance(s, ShardRecord) and s.kind == "predict" for s in shards)
    catalog.shard_lost("job_p", 0, 1, "lost", "gone")
    (first, _) = catalog.list_shards("job_p")
    assert first.error == {"code": "lost", "message": "attempt 1: gone; retrying"}
    # Every JSON field of every record is a Python value, never the column's text.
    for record in (dataset, model, job, claimed, first):
        for f in dataclasses.fields(record):
            if f.name in JSON_COLUMNS:
                assert not isinstance(getattr(record, f.name), str), (type(record).__name__, f.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = "failed"  # type: ignore[misc]


def test_public_job_views_leave_the_request_out(catalog):
    _world(catalog)
    views = [catalog.get_job("job_t"), catalog.get_job("job_p"), *catalog.list_jobs(limit=10, offset=0)[0]]
    queued, created = catalog.enqueue(
        job={
            "job_id": "job_q",
            "kind": "predict",
            "model_id": "mdl_1",
            "dataset_id": "ds_1",
            "max_attempts": 1,
            "request": {"secret": 1},
        },
        idempotency=("predict", "k1"),
    )
    again, created_again = catalog.enqueue(
        job={"job_id": "job_r", "kind": "predict", "max_attempts": 1, "request": {}}, idempotency=("predict", "k1")
    )
    assert created and not created_again and again["job_id"] == "job_q"
    views += [queued, again, catalog.cancel("job_q")]
    assert all("request" not in v for v in views)
    assert catalog.get_job("job_p")["shard_status"][0]["row_stop"] == 2
    assert catalog.get_job("job_t")["metrics"] == {"accuracy": 1.0}


def test_job_lists_cut_drift_and_explanations_to_their_headline():
    from kubepredict.catalog.records import compact_summary

    drift = {
        "available": True,
        "rows": 10,
        "threshold": 0.25,
        "detected": True,
        "max_psi": 3.1,
        "worst_feature": "a",
        "features": [{"feature": "a", "psi": 3.1, "histogram": {"bins": ["x"] * 10, "reference": [1] * 10}}],
        "prediction": {"psi": 0.2},
    }
    explanations = {"method": "linear", "scale": "value", "rows": [{"output": [1.0]}, {"output": [2.0]}]}
    summary = {"rows": 10, "class_counts": {"a": 10}, "drift": drift, "explanations": explanations}
    listed = compact_summary(summary)
    assert listed == {
        "rows": 10,
        "class_counts": {"a": 10},
        "drift": {k: drift[k] for k in ("available", "rows", "threshold", "detected", "max_psi", "worst_feature")},
        "explanations": {"method": "linear", "scale": "value", "rows": 2},
    }
    assert summary["drift"]["features"] and summary["explanations"]["rows"][0] == {"output": [1.0]}  # untouched
    plain = {"rows": 3}
    assert compact_summary(plain) is plain and compact_summary(None) is None


def test_the_job_list_shows_the_compact_summary_the_job_the_full_one(catalog):
    _world(catalog)
    (job,) = [j for j in catalog.claim_next(5) if j.job_id == "job_p"]
    full = {"rows": 4, "drift": {"available": True, "max_psi": 0.5, "features": [{"feature": "a"}]}}
    with catalog.jobs.db.tx() as conn:
        conn.execute(schema.jobs.update().where(schema.jobs.c.job_id == "job_p").values(summary=full))
    assert catalog.get_job("job_p")["summary"] == full
    (listed,) = [j for j in catalog.list_jobs(limit=10, offset=0)[0] if j["job_id"] == "job_p"]
    assert listed["summary"] == {"rows": 4, "drift": {"available": True, "max_psi": 0.5}}
