"""The CSV download joins every input row with its prediction, whether it reuses the uploaded lines (one
plain line per row) or formats the Parquet copy (quoted fields), and agrees with the paginated results."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

from kubepredict.api import FUNCTIONS
from kubepredict.api.http import Request
from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker


@pytest.fixture
def svc(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEPREDICT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KUBEPREDICT_PREDICT_CHUNK_ROWS", "700")  # several stored batches
    services = bootstrap(Settings.from_env())
    yield services
    services.catalog.dispose()


def _call(svc, fn, method, path, body=b"", query=None, ctype="application/json"):
    resp = FUNCTIONS[fn](
        Request.build(method, path, query=query or {}, headers={"Content-Type": ctype}, body=body), svc
    )
    return resp.body if isinstance(resp.body, bytes) else b"".join(resp.body)


@pytest.mark.parametrize("labels, quote", [(["pos", "neg"], False), ([1, 0], False), (["pos, yes", "neg"], True)])
def test_csv_rows_match_inputs_and_paginated_predictions(svc, labels, quote):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=2500), "b": rng.integers(0, 5, 2500), "c": rng.choice(["x", "y"], 2500)})
    frame.loc[::7, "a"] = np.nan
    frame["y"] = np.where(frame["a"].fillna(0) > 0, labels[0], labels[1])
    data = frame.to_csv(index=False).encode()
    assert (b'"' in data.split(b"\n", 1)[1]) == quote  # which path: reused lines, or formatted
    ds = json.loads(_call(svc, "upload", "POST", "/", data, {"name": "d"}, "text/csv"))
    q = json.loads(
        _call(
            svc,
            "train",
            "POST",
            "/",
            json.dumps({"dataset_id": ds["dataset_id"], "target": "y", "algorithm": "logistic_regression"}).encode(),
        )
    )
    run_worker(svc, q["job_id"])
    p = json.loads(
        _call(
            svc,
            "predict",
            "POST",
            "/",
            json.dumps({"model_id": q["model_id"], "dataset_id": ds["dataset_id"]}).encode(),
        )
    )
    run_worker(svc, p["job_id"])
    out = _call(svc, "result", "GET", "/" + p["job_id"], query={"format": "csv"}).decode()
    rows = list(csv.DictReader(io.StringIO(out)))
    page = []
    for offset in range(0, 2500, 1000):
        page += json.loads(
            _call(svc, "result", "GET", "/" + p["job_id"], query={"limit": "1000", "offset": str(offset)})
        )["predictions"]["rows"]
    assert len(rows) == len(page) == 2500
    assert [r["prediction"] for r in rows] == [str(r["prediction"]) for r in page]
    back = pd.read_csv(io.StringIO(out))
    pd.testing.assert_frame_equal(back[["a", "b", "c", "y"]], frame, check_dtype=False)
    first = [k for k in rows[0] if k.startswith("probability_")][0]
    assert [float(r[first]) for r in rows] == [r["probabilities"][0] for r in page]


@pytest.mark.parametrize("read_bytes", [5, 64, 333, 4096])
@pytest.mark.parametrize("last_newline", [True, False])
def test_reused_lines_read_in_any_chunks_give_the_same_csv(svc, monkeypatch, read_bytes, last_newline):
    """The uploaded lines are reused as read, chunk by chunk: rows cut by a chunk's end (or longer than a
    chunk, or a header that is), and a file with no newline after its last row, give the same download."""
    from kubepredict.services import csv_download as cd

    monkeypatch.setattr(cd, "_formatted", lambda *a, **k: pytest.fail("plain lines must be reused"))
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a_long_column_name": rng.normal(size=300).round(6), "b": rng.integers(0, 9, 300)})
    frame["y"] = np.where(frame["a_long_column_name"] > 0, "pos", "neg")
    data = frame.to_csv(index=False).encode()
    ds = json.loads(_call(svc, "upload", "POST", "/", data if last_newline else data[:-1], {"name": "d"}, "text/csv"))
    body = json.dumps({"dataset_id": ds["dataset_id"], "target": "y", "algorithm": "logistic_regression"})
    q = json.loads(_call(svc, "train", "POST", "/", body.encode()))
    run_worker(svc, q["job_id"])
    body = json.dumps({"model_id": q["model_id"], "dataset_id": ds["dataset_id"]})
    p = json.loads(_call(svc, "predict", "POST", "/", body.encode()))
    run_worker(svc, p["job_id"])
    monkeypatch.setattr(cd, "RAW_READ_BYTES", read_bytes)
    out = _call(svc, "result", "GET", "/" + p["job_id"], query={"format": "csv"}).decode()
    page = json.loads(_call(svc, "result", "GET", "/" + p["job_id"], query={"limit": "1000"}))["predictions"]["rows"]
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 302  # header, 300 rows, then the file's last newline
    assert lines[0] == "a_long_column_name,b,y,prediction,probability_neg,probability_pos"
    raw = data.decode().split("\n")
    assert [line.rsplit(",", 3)[0] for line in lines[1:-1]] == raw[1:301]
    assert [line.split(",")[3] for line in lines[1:-1]] == [r["prediction"] for r in page]


def test_rows_without_stored_predictions_come_out_blank_in_order(monkeypatch):
    """Input rows and stored prediction batches are walked together; rows no batch covers (before, between,
    after them) come out in order with no predictions, in pieces of at most CSV_BATCH_ROWS rows."""
    import pyarrow as pa

    from kubepredict.services import csv_download as cd

    monkeypatch.setattr(cd, "CSV_BATCH_ROWS", 4)
    rows = pa.RecordBatch.from_arrays([pa.array(range(30))], ["x"])

    class Catalog:
        def iter_prediction_tables(self, job_id):
            for first, n in ((5, 6), (13, 3)):  # rows 0-4, 11-12 and 16-29 have none
                yield first, pa.table({"prediction": pa.array(range(first, first + n))})

    seen = []
    for parts, preds in cd._aligned(Catalog(), "job", cd._RowReader([rows.slice(0, 9), rows.slice(9)]), 30):
        xs = [v for p in parts for v in p.column(0).to_pylist()]
        assert len(xs) <= 4
        assert preds is None or preds.column("prediction").to_pylist() == xs
        seen += [(x, preds is not None) for x in xs]
    assert [x for x, _ in seen] == list(range(30))
    assert [x for x, scored in seen if scored] == list(range(5, 11)) + [13, 14, 15]


# ---- CSV injection: formula cells are neutralised, numbers stay numbers ------------------------------------
FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1+1)", "-2+3+cmd|' /C calc'!A0", "@SUM(1)", "=HYPERLINK(A1)"]


def _download(svc, frame: pd.DataFrame, target: str) -> list[list[str]]:
    data = frame.to_csv(index=False).encode()
    ds = json.loads(_call(svc, "upload", "POST", "/", data, {"name": "f"}, "text/csv"))
    q = json.loads(
        _call(
            svc,
            "train",
            "POST",
            "/",
            json.dumps({"dataset_id": ds["dataset_id"], "target": target, "algorithm": "decision_tree"}).encode(),
        )
    )
    assert run_worker(svc, q["job_id"]) == 0
    p = json.loads(
        _call(
            svc,
            "predict",
            "POST",
            "/",
            json.dumps({"model_id": q["model_id"], "dataset_id": ds["dataset_id"]}).encode(),
        )
    )
    assert run_worker(svc, p["job_id"]) == 0
    out = _call(svc, "result", "GET", "/" + p["job_id"], query={"format": "csv"}).decode()
    return list(csv.reader(io.StringIO(out)))


@pytest.mark.parametrize("quoted", [False, True], ids=["reused-lines", "formatted"])
def test_formula_cells_are_neutralised_and_numbers_kept(svc, quoted, monkeypatch):
    from kubepredict.services import csv_download as cd

    checked = []
    spy = cd._formula_cells
    monkeypatch.setattr(cd, "_formula_cells", lambda parquet: checked.append(spy(parquet)) or checked[-1])
    rng = np.random.default_rng(1)
    n = 1500
    text = rng.choice(FORMULAS + ["plain", "-1.5", "+3", "x-y"], n)
    frame = pd.DataFrame(
        {
            "note": text,
            "amount": np.round(rng.normal(size=n), 3),
            "other": rng.choice(["a, b" if quoted else "ab", "c"], n),
        }
    )
    frame["label"] = np.where(frame["amount"] > 0, "=1+1", "-safe")
    rows = _download(svc, frame, "label")
    assert checked == ([] if quoted else [True])  # a file of plain lines is checked, and formatted instead
    header, body = rows[0], rows[1:]
    assert header[:4] == ["note", "amount", "other", "label"] and len(body) == n
    col = {name: [r[j] for r in body] for j, name in enumerate(header)}
    expected_note = ["'" + t if t in FORMULAS else t for t in text]  # "-1.5" and "+3" are plain numbers
    assert col["note"] == expected_note
    assert col["label"] == ["'" + v for v in frame["label"]]
    assert set(col["prediction"]) <= {"'=1+1", "'-safe"} and "'=1+1" in col["prediction"]
    assert [float(v) for v in col["amount"]] == frame["amount"].tolist()  # negative numbers: untouched
    assert any(v.startswith("-") for v in col["amount"])
    for line_cells in body:  # no cell a spreadsheet would evaluate
        assert not any(c.startswith(("=", "+", "@", "\t", "\r")) and c not in ("+3",) for c in line_cells)


def test_clean_text_keeps_the_reused_lines_fast_path(svc, monkeypatch):
    from kubepredict.services import csv_download as cd

    monkeypatch.setattr(cd, "_formatted", lambda *a, **k: pytest.fail("a clean file must reuse its lines"))
    frame = pd.DataFrame({"t": ["a", "b-c", "-1", "d"] * 50, "v": np.arange(200) - 100.5})
    frame["y"] = np.where(frame["v"] > 0, "pos", "neg")
    rows = _download(svc, frame, "y")
    assert [r[0] for r in rows[1:5]] == ["a", "b-c", "-1", "d"] and rows[1][1] == "-100.5"


def test_neutralised_touches_text_cells_only():
    import pyarrow as pa

    from kubepredict.services.csv_download import _neutral_name, _neutralised

    text = pa.array(["=1+1", "-1.5", "-x", "+", "@a", "\tx", "\rx", "ok", None, "", "1e5", "-.5e-3"])
    assert _neutralised(text).to_pylist() == [
        "'=1+1",
        "-1.5",
        "'-x",
        "'+",
        "'@a",
        "'\tx",
        "'\rx",
        "ok",
        None,
        "",
        "1e5",
        "-.5e-3",
    ]
    assert _neutralised(pa.array([-1.5, 2.0])).to_pylist() == [-1.5, 2.0]
    assert _neutralised(text.dictionary_encode()).to_pylist()[:3] == ["'=1+1", "-1.5", "'-x"]
    clean = pa.array(["a", "b"])
    assert _neutralised(clean) is clean  # nothing to do: the same array, no copy
    assert (_neutral_name("=x"), _neutral_name("-2"), _neutral_name("a")) == ("'=x", "-2", "a")
