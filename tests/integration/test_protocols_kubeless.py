"""The standard protocol routes under the Kubeless runtime as it runs calls: a fresh forkserver child per call,
the runtime's event (JSON parsed only for exactly ``application/json``), configuration from the environment.

The bodies are what the real clients send: tritonclient's binary tensor request (no Content-Type), the
KServe V1 body, MLflow's CSV; and the errors come back in each protocol's own shape, never as a 5xx.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton

from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker
from tests.integration.test_prometheus_kubeless import IRIS, JSON, KubelessRuntime, kubeless_env  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [6.3, 2.9, 5.6, 1.8]


def test_protocol_routes_in_fresh_kubeless_children(kubeless_env):  # noqa: F811 - the fixture imported above
    rt = KubelessRuntime(kubeless_env)
    status, ds = rt.call("upload", "POST", "/", IRIS, {"Content-Type": "text/csv"}, {"name": "iris"})
    assert status == 201, ds
    status, queued = rt.call(
        "train",
        "POST",
        "/",
        json.dumps(
            {"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "logistic_regression", "name": "iris"}
        ).encode(),
        JSON,
    )
    assert status == 202, queued
    assert run_worker(bootstrap(Settings.from_env(kubeless_env)), queued["job_id"]) == 0

    status, native = rt.call(
        "predict",
        "POST",
        "/",
        json.dumps({"model_id": "iris", "instances": [dict(zip(FEATURES, ROW, strict=True))]}).encode(),
        JSON,
    )
    assert status == 200 and native["model_id"] == queued["model_id"]

    inputs = []
    for name, value in zip(FEATURES, ROW, strict=True):
        tensor = triton.InferInput(name, [1], "FP32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.float32))
        inputs.append(tensor)
    raw, header = triton.InferenceServerClient.generate_request_body(inputs, request_id="kl-1")
    status, out = rt.call(
        "predict", "POST", "/v2/models/iris/infer", raw, {"Inference-Header-Content-Length": str(header)}
    )
    assert status == 200 and out["id"] == "kl-1", out
    assert out["outputs"][0]["data"] == native["predictions"]

    status, meta = rt.call("predict", "GET", f"/v2/models/{queued['model_id']}")
    assert status == 200 and [i["name"] for i in meta["inputs"]] == FEATURES
    status, out = rt.call("predict", "POST", "/v1/models/iris:predict", json.dumps({"instances": [ROW]}).encode(), JSON)
    assert (status, out) == (200, {"predictions": native["predictions"]})
    csv = (",".join(FEATURES) + "\n" + ",".join(map(str, ROW)) + "\n").encode()
    status, out = rt.call("predict", "POST", "/models/iris/invocations", csv, {"Content-Type": "text/csv"})
    assert (status, out) == (200, {"predictions": native["predictions"]})

    status, err = rt.call(
        "predict",
        "POST",
        "/v2/models/iris/infer",
        json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": ROW[:3]}]}).encode(),
        JSON,
    )
    assert status == 400 and set(err) == {"error"}
    status, err = rt.call("predict", "GET", "/v2/models/no-such/ready")
    assert status == 404 and set(err) == {"error"}
    status, err = rt.call("predict", "POST", "/v1/models/iris:predict", json.dumps({"instances": [[1]]}).encode(), JSON)
    assert status == 400 and set(err) == {"error"}
    status, err = rt.call("predict", "POST", "/invocations", json.dumps({"instances": [ROW]}).encode(), JSON)
    assert status == 404 and err["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert all(int(code) < 500 for (_, code) in rt.calls)
