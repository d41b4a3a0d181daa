"""Under the Kubeless adapter, Prometheus still sees every call and every job.

Each call runs as Kubeless runs it: in a **fresh child process** (multiprocessing ``forkserver``
with the handlers preloaded, the runtime's default ``MP_CONTEXT``), with the event the python
runtime builds (a bottle request in ``extensions``, ``data`` parsed only for exactly
``application/json``), configured only through the environment. Whatever a child counts in memory
dies with it. Jobs run from a separate ``kubepredict dispatcher`` process, which also serves the
catalogue's metrics — the only thing a real Prometheus scrapes here.
"""

from __future__ import annotations

import collections
import io
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.gateway_process import REPO, free_port
from tests.integration.prom_helpers import SCRAPE, assert_flow_metrics, wait_equal

pytestmark = pytest.mark.slow

IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
HANDLERS = [f"functions.{n}.handler" for n in ("upload", "train", "predict", "result")]
JSON = {"Content-Type": "application/json"}


def _kubeless_call(env: dict, name: str, method: str, path: str, body: bytes, headers: dict, query: dict):
    """Runs in the child: build the Kubeless event, call ``handler.handler``, return (pid, status, body)."""
    import importlib

    import bottle

    os.environ.update(env)
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": urlencode(query),
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "fn",
        "SERVER_PORT": "8080",
        "wsgi.url_scheme": "http",
    }
    for k, v in headers.items():
        environ["CONTENT_TYPE" if k.lower() == "content-type" else "HTTP_" + k.upper().replace("-", "_")] = v
    req = bottle.BaseRequest(environ)
    data = json.loads(body) if req.get_header("content-type") == "application/json" else body
    event = {
        "data": data,
        "event-id": None,
        "event-type": None,
        "event-time": None,
        "event-namespace": None,
        "extensions": {"request": req},
    }
    out = importlib.import_module(f"functions.{name}.handler").handler(
        event, {"function-name": name, "timeout": 180.0, "runtime": "python3.11", "memory-limit": "0"}
    )
    payload = out.body if isinstance(out.body, bytes) else "".join(out.body).encode()
    return os.getpid(), out.status_code, payload


def _child(queue, *args):
    queue.put(_kubeless_call(*args))


class KubelessRuntime:
    """One fresh child process per call, as the Kubeless python runtime does; tallies what happened."""

    def __init__(self, env: dict):
        self.env = env
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(HANDLERS)
        self.calls: collections.Counter = collections.Counter()
        self.pids: set[int] = set()

    def call(self, name, method="GET", path="/", body=b"", headers=None, query=None):
        queue = self.ctx.Queue()
        proc = self.ctx.Process(
            target=_child, args=(queue, self.env, name, method, path, body, headers or {}, query or {})
        )
        proc.start()
        pid, status, payload = queue.get(timeout=120)
        proc.join(30)
        assert pid != os.getpid() and pid not in self.pids  # a fresh process every call
        self.pids.add(pid)
        self.calls[(name, str(status))] += 1
        return status, json.loads(payload) if payload else None

    def wait(self, job_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.call("result", path=f"/{job_id}", query={"limit": "0"})
            assert status == 200, job
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture
def kubeless_env(tmp_path, backend_env):
    data = tmp_path / "kubeless"
    data.mkdir()
    return {"KUBEPREDICT_DATA_DIR": str(data), **backend_env(str(data))}


@pytest.fixture
def dispatcher(kubeless_env, tmp_path):
    """``kubepredict dispatcher`` with its metrics port: runs the jobs, serves the catalogue's metrics."""
    port = free_port()
    env = {**os.environ, **kubeless_env, "KUBEPREDICT_DISPATCH_INTERVAL_SECONDS": "0.2"}
    with open(tmp_path / "dispatcher.log", "ab") as log:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubepredict.cli",
                "dispatcher",
                "--metrics-port",
                str(port),
                "--metrics-host",
                "127.0.0.1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, Path(tmp_path / "dispatcher.log").read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "dispatcher metrics never answered"
        time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_kubeless_calls_and_jobs_reach_prometheus(prometheus, promtool, kubeless_env, dispatcher):
    job = f"kp-kubeless-{dispatcher.split(':')[1]}"
    prometheus.set_scrape_targets(job, [dispatcher], **SCRAPE)
    rt = KubelessRuntime(kubeless_env)

    status, ds = rt.call("upload", "POST", "/", IRIS, {"Content-Type": "text/csv"}, {"name": "iris"})
    assert status == 201, ds
    assert rt.call("upload", "POST", "/", b"", {"Content-Type": "text/csv"})[0] == 400
    assert rt.call("train", "POST", "/", json.dumps({"dataset_id": "ds_nope", "target": "y"}).encode(), JSON)[0] == 404
    status, train = rt.call(
        "train",
        "POST",
        "/",
        json.dumps({"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "logistic_regression"}).encode(),
        JSON,
    )
    assert status == 202, train
    assert rt.wait(train["job_id"])["status"] == "succeeded"
    status, pjob = rt.call(
        "predict",
        "POST",
        "/",
        json.dumps({"model_id": train["model_id"], "dataset_id": ds["dataset_id"]}).encode(),
        JSON,
    )
    assert status == 202, pjob
    assert rt.wait(pjob["job_id"])["status"] == "succeeded"
    assert (
        rt.call(
            "predict",
            "POST",
            "/",
            json.dumps(
                {
                    "model_id": train["model_id"],
                    "instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}],
                }
            ).encode(),
            JSON,
        )[0]
        == 200
    )
    assert rt.call("result", "GET", "/job_nope")[0] == 404
    assert rt.call("predict", "PUT", "/")[0] == 405

    assert sum(rt.calls.values()) == len(rt.pids) >= 10
    sel = f'job="{job}"'
    assert_flow_metrics(prometheus, job, rt.calls, 150.0)
    wait_equal(prometheus, f"sum(kubepredict_jobs_in_queue{{{sel}}})", 0.0)

    exposition = httpx.get(f"http://{dispatcher}/metrics", timeout=30).content
    check = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert check.returncode == 0, (check.returncode, check.stdout.decode(), check.stderr.decode())
