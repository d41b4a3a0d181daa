"""The gateway sweeps orphans when it starts (issue 16: a kill -9 left a dataset folder with no catalogue
row, and nothing cleaned it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()


def test_a_restarted_gateway_removes_what_a_killed_upload_left(tmp_path):
    data = tmp_path / "data"
    gw = GatewayProcess(data).start()
    http = httpx.Client(base_url=gw.url, timeout=60)
    ds = http.post("/function/upload", content=IRIS, headers={"Content-Type": "text/csv"}).json()
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    objects = data / "objects"
    leftovers = [
        objects / "datasets" / "ds_killed" / "data.csv",
        objects / "models" / "mdl_killed" / "model.skops",
        objects / ".tmp-killed-upload",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by kill -9")
    past = time.time() - 7200
    for path in objects.rglob("*"):
        os.utime(path, (past, past))  # older than the default grace period of an hour
    gw = GatewayProcess(data, port=gw.port).start()
    try:
        deadline = time.monotonic() + 30
        while any(p.exists() for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(p.exists() for p in leftovers)
        assert not (objects / "datasets" / "ds_killed").exists() and not (objects / "models" / "mdl_killed").exists()
        assert http.get(f"/function/upload/{ds['dataset_id']}").status_code == 200  # owned: kept, however old
        assert (objects / "datasets" / ds["dataset_id"] / "data.parquet").is_file()
    finally:
        gw.stop()
