"""Uploads are streamed: an oversize body is refused without being held in memory, a large one is parsed in
chunks with the gateway's memory flat, and its Parquet copy is cut into row groups."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
ROW = b"1.234567,2.345678,3.456789,4.567891,5.678912,6.789123,7.891234,8.912345,1\n"
HEADER = b"a,b,c,d,e,f,g,h,y\n"


def _rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _body(total: int, block: int = 4 * MIB):
    """A CSV body of about ``total`` bytes, generated as it is sent (chunked: no Content-Length)."""
    yield HEADER
    rows = ROW * (block // len(ROW))
    sent = len(HEADER)
    while sent < total:
        yield rows
        sent += len(rows)


def test_oversize_chunked_upload_is_refused_without_holding_it(start_gateway):
    gw = start_gateway({"KUBEPREDICT_MAX_UPLOAD_BYTES": str(8 * MIB)})
    http = httpx.Client(base_url=gw.url, timeout=300)
    before = _rss(gw.proc.pid)
    r = http.post(
        "/function/upload", params={"name": "too-big"}, content=_body(512 * MIB), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "payload_too_large"
    grown = _rss(gw.proc.pid)["VmHWM"] - before["VmRSS"]
    # What the first upload costs a fresh gateway whatever its size (parser threads and their buffers, the
    # body read ahead): far below the body, and below the gateway's bound of 256 MiB.
    assert grown < 96 * MIB, f"gateway peak RSS grew by {grown / MIB:.0f} MiB for a 512 MiB body"
    assert http.get("/function/upload").json()["total"] == 0  # nothing kept
    assert http.get("/healthz").text == "OK"


def test_large_upload_streams_with_flat_memory_and_row_groups(start_gateway):
    gw = start_gateway({"KUBEPREDICT_MAX_UPLOAD_BYTES": str(1024 * MIB)})
    http = httpx.Client(base_url=gw.url, timeout=600)
    before = _rss(gw.proc.pid)
    r = http.post(
        "/function/upload", params={"name": "large"}, content=_body(384 * MIB), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    grown = _rss(gw.proc.pid)["VmHWM"] - before["VmRSS"]
    assert ds["size_bytes"] > 384 * MIB and ds["rows"] == (ds["size_bytes"] - len(HEADER)) // len(ROW)
    # The gateway's bound whatever the body's size (README): its parser threads, their blocks in flight and
    # the body read ahead, never the body itself (which is half again as large).
    assert grown < 256 * MIB, f"gateway peak RSS grew by {grown / MIB:.0f} MiB for {ds['size_bytes'] / MIB:.0f} MiB"
    cols = {c["name"]: c for c in ds["columns"]}
    assert cols["a"]["dtype"] == "float64" and cols["a"]["unique"] == 1 and cols["y"]["dtype"] == "int64"
    # The gateway allocates Arrow's memory from jemalloc (arrow_memory.py), and its start-up line says so.
    assert "Arrow memory: jemalloc" in gw.log_path.read_text(), gw.log_tail()


def _wait(http: httpx.Client, job_id: str) -> dict:
    import time

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = http.get(f"/function/result/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_column_that_turns_to_text_after_300k_rows_is_stored_and_trains(start_gateway):
    """Issue 16: numeric for 300k rows, then text; stored with one type for the whole column; train,
    batch predict and the CSV download work on it."""
    gw = start_gateway({"KUBEPREDICT_MAX_UPLOAD_BYTES": str(64 * MIB)})
    http = httpx.Client(base_url=gw.url, timeout=300)
    n = 320_000
    body = "".join(f"{i % 1000 if i != 300_000 else 'n/a-ish'},{i % 7},{(i * 37) % 101},{i % 2}\n" for i in range(n))
    r = http.post(
        "/function/upload",
        params={"name": "turns"},
        content=("code,k,v,y\n" + body).encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    cols = {c["name"]: c["dtype"] for c in ds["columns"]}
    assert ds["rows"] == n and cols == {"code": "str", "k": "int64", "v": "int64", "y": "int64"}
    q = http.post(
        "/function/train", json={"dataset_id": ds["dataset_id"], "target": "y", "algorithm": "logistic_regression"}
    )
    assert q.status_code == 202, q.text
    assert _wait(http, q.json()["job_id"])["status"] == "succeeded"
    p = http.post("/function/predict", json={"model_id": q.json()["model_id"], "dataset_id": ds["dataset_id"]})
    assert _wait(http, p.json()["job_id"])["status"] == "succeeded"
    csv = http.get(f"/function/result/{p.json()['job_id']}", params={"format": "csv"})
    assert csv.status_code == 200 and csv.text.count("\n") == n + 1
    assert csv.text.splitlines()[300_001].startswith("n/a-ish,")


def test_wide_header_and_huge_integers_are_stored(start_gateway):
    """Issue 16: a 10,000-column header (> 64 KiB) and a cell 99999999999999999999999999999 got errors."""
    gw = start_gateway()
    http = httpx.Client(base_url=gw.url, timeout=300)
    header = ",".join(f"column_{i}" for i in range(10_000))
    rows = "\n".join(",".join(str((r * c) % 5) for c in range(10_000)) for r in range(5))
    r = http.post("/function/upload", content=f"{header}\n{rows}\n".encode(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    assert len(r.json()["columns"]) == 10_000
    r = http.post(
        "/function/upload", content=b"a,b\n1,2\n99999999999999999999999999999,3\n", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["columns"][0]["dtype"] == "str"
    shown = http.get(f"/function/upload/{r.json()['dataset_id']}").json()
    assert shown["preview"][1]["a"] == "99999999999999999999999999999"  # exact, not 1e+29
