"""``run_worker`` called in a process that is not a worker (tests, the Kubeless adapter's child) leaves the
process's title alone; the worker entry point names its process through ``on_claimed``."""

from __future__ import annotations

import json

from setproctitle import getproctitle

from kubepredict.api import FUNCTIONS
from kubepredict.api.http import Request
from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker


def _queue_train(svc) -> str:
    def call(fn, body, query=None, ctype="application/json"):
        req = Request.build("POST", "/", query=query or {}, headers={"Content-Type": ctype}, body=body)
        return json.loads(FUNCTIONS[fn](req, svc).body)

    ds = call(
        "upload", b"a,b,y\n" + b"".join(f"{i},{i % 3},{i % 2}\n".encode() for i in range(40)), {"name": "d"}, "text/csv"
    )
    body = {"dataset_id": ds["dataset_id"], "target": "y", "algorithm": "logistic_regression"}
    return call("train", json.dumps(body).encode())["job_id"]


def test_run_worker_in_process_keeps_the_title_and_reports_the_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEPREDICT_DATA_DIR", str(tmp_path))
    svc = bootstrap(Settings.from_env())
    try:
        before = getproctitle()
        assert run_worker(svc, _queue_train(svc)) == 0
        assert getproctitle() == before
        claimed: list[str] = []
        assert run_worker(svc, _queue_train(svc), on_claimed=claimed.append) == 0
        assert claimed == ["train"]
        assert getproctitle() == before
    finally:
        svc.catalog.dispose()
