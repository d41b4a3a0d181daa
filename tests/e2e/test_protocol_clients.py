"""Unmodified standard clients against a real ``kubepredict serve`` (what ``make run`` starts).

Triton's ``tritonclient[http]`` (Open Inference Protocol, binary tensors by default), the KServe SDK's
``InferenceRESTClient`` (V1 and V2; in its own virtualenv, since it pins pandas<3) and MLflow's
documented scoring-server bodies. Answers must equal the native ``/function/predict`` answer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.e2e.api import Api
from tests.gateway_process import REPO, GatewayProcess

pytestmark = pytest.mark.e2e

IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [6.3, 2.9, 5.6, 1.8]
NAME = "iris-proto"
KSERVE_REQUIREMENTS = REPO / "tests" / "clients" / "kserve-requirements.txt"


def mixed_csv() -> str:
    rng = np.random.default_rng(7)
    lines = ["size,color,label"]
    for _ in range(120):
        color = rng.choice(["red", "green", "blue"])
        size = float(rng.normal(10, 2))
        lines.append(f"{size:.3f},{color},{'warm' if color == 'red' or size > 12 else 'cold'}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory, backend_env):
    """A gateway whose ``/invocations`` serves the iris model by name, with two trained models."""
    data_dir = tmp_path_factory.mktemp("protocols")
    gw = GatewayProcess(data_dir, env={"KUBEPREDICT_DEFAULT_MODEL": NAME, **backend_env(str(data_dir))}).start()
    api = Api(gw.url)
    models = {}
    for name, data, target in ((NAME, IRIS.decode(), "species"), ("mixed", mixed_csv(), "label")):
        ds = api.upload(data, name)
        queued = api.train(dataset_id=ds["dataset_id"], target=target, algorithm="logistic_regression", name=name)
        assert api.wait(queued["job_id"])["status"] == "succeeded"
        models[name] = queued["model_id"]
    yield gw, api, models
    gw.stop()


def native(api, model_id, rows):
    return api.online(model_id, instances=rows)


def test_triton_client(served):
    gw, api, models = served
    client = triton.InferenceServerClient(url=gw.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME) and client.is_model_ready(NAME, "1") and client.is_model_ready(models[NAME])
    assert not client.is_model_ready("no-such-model") and not client.is_model_ready(NAME, "9")
    meta = client.get_model_metadata(NAME)
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [(f, "FP64") for f in FEATURES]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]

    expected = native(
        api,
        models[NAME],
        [dict(zip(FEATURES, ROW, strict=True)), dict(zip(FEATURES, [5.0, 3.4, 1.5, 0.2], strict=True))],
    )
    inputs = []
    for j, name in enumerate(FEATURES):  # one FP32 tensor per column, binary (the client's default)
        tensor = triton.InferInput(name, [2], "FP32")
        tensor.set_data_from_numpy(np.array([ROW[j], [5.0, 3.4, 1.5, 0.2][j]], dtype=np.float32))
        inputs.append(tensor)
    result = client.infer(NAME, inputs, request_id="t-1")
    assert result.get_response()["id"] == "t-1"
    assert result.as_numpy("predict").tolist() == expected["predictions"]
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected["probabilities"], atol=1e-4)
    assert result.get_output("predict_proba")["parameters"]["classes"] == expected["classes"]

    matrix = triton.InferInput("input-0", [1, 4], "FP64")  # one 2-D tensor in feature order, JSON data
    matrix.set_data_from_numpy(np.array([ROW]), binary_data=False)
    only = [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer(NAME, [matrix], model_version="1", outputs=only)
    assert result.as_numpy("predict").tolist() == expected["predictions"][:1]
    assert result.as_numpy("predict_proba") is None

    mixed = native(api, models["mixed"], [{"size": 9.5, "color": "red"}, {"size": 8.0, "color": "blue"}])
    size, color = triton.InferInput("size", [2], "FP64"), triton.InferInput("color", [2], "BYTES")
    size.set_data_from_numpy(np.array([9.5, 8.0]))
    color.set_data_from_numpy(np.array(["red", "blue"], dtype=np.object_))
    result = client.infer("mixed", [size, color])
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict").tolist()] == mixed[
        "predictions"
    ]

    short = triton.InferInput("input-0", [1, 3], "FP64")
    short.set_data_from_numpy(np.array([ROW[:3]]))
    with pytest.raises(InferenceServerException) as err:
        client.infer(NAME, [short])
    assert err.value.status() == "400" and "this model takes [rows, 4]" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-model", inputs)
    assert err.value.status() == "404"
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("no-such-model")
    assert err.value.status() == "404"
    client.close()


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    """The KServe SDK in its own virtualenv (built once per requirements file; pip's cache makes it quick)."""
    digest = hashlib.sha256(KSERVE_REQUIREMENTS.read_bytes()).hexdigest()
    venv = Path.home() / ".cache" / "kubepredict" / "kserve-client-0.21.0"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "kserve-client.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = venv / ".requirements-sha256"
        if not marker.is_file() or marker.read_text() != digest:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "-r", str(KSERVE_REQUIREMENTS)], check=True, timeout=900
            )
            marker.write_text(digest)
    return venv / "bin" / "python"


def test_kserve_sdk_rest_client(served, kserve_python):
    gw, api, models = served
    expected = native(api, models[NAME], [dict(zip(FEATURES, ROW, strict=True))])
    run = subprocess.run(
        [
            str(kserve_python),
            str(REPO / "tests" / "clients" / "kserve_client.py"),
            gw.url,
            NAME,
            json.dumps(FEATURES),
            json.dumps(ROW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["v1_model_ready"] is True
    assert out["v1_lists"] == {"predictions": expected["predictions"] * 2}
    assert out["v1_objects"] == {"predictions": expected["predictions"]}
    assert out["v1_bad_width"][0] == 400 and "4 values in feature order" in out["v1_bad_width"][1]["error"]
    assert out["v1_unknown_model"][0] == 404 and set(out["v1_unknown_model"][1]) == {"error"}
    assert out["v2_live"] is True and out["v2_ready"] is True
    assert out["v2_model_ready"] is True and out["v2_unknown_ready"] is False
    assert out["v2_columns"]["id"] == "kserve-1"
    assert out["v2_columns"]["outputs"]["predict"] == expected["predictions"]
    np.testing.assert_allclose(out["v2_columns"]["outputs"]["predict_proba"], expected["probabilities"], atol=1e-4)
    assert out["v2_columns"]["classes"] == [{"classes": expected["classes"]}]
    assert out["v2_matrix"]["predict"] == expected["predictions"] * 2
    assert out["v2_bad_width"][0] == 400 and set(out["v2_bad_width"][1]) == {"error"}


MLFLOW_BODIES = [  # as documented for MLflow's scoring server (mlflow models serve)
    {"dataframe_split": {"columns": FEATURES, "data": [ROW]}},
    {"dataframe_split": {"index": [0], "columns": FEATURES, "data": [ROW]}},
    {"dataframe_records": [dict(zip(FEATURES, ROW, strict=True))]},
    {"instances": [dict(zip(FEATURES, ROW, strict=True))]},
    {"instances": [ROW]},
    {"inputs": {f: [v] for f, v in zip(FEATURES, ROW, strict=True)}},
    {"inputs": [ROW], "params": {}},
]


@pytest.mark.parametrize("path", [f"/models/{NAME}/invocations", "/invocations"])
def test_mlflow_scoring_server_bodies(served, path):
    gw, api, models = served
    expected = {"predictions": native(api, models[NAME], [dict(zip(FEATURES, ROW, strict=True))])["predictions"]}
    http = httpx.Client(base_url=gw.url, timeout=30)
    for body in MLFLOW_BODIES:
        r = http.post(path, json=body)
        assert (r.status_code, r.json()) == (200, expected), body
    csv = ",".join(FEATURES) + "\n" + ",".join(map(str, ROW)) + "\n"
    r = http.post(path, content=csv, headers={"Content-Type": "text/csv"})
    assert (r.status_code, r.json()) == (200, expected)
    r = http.post(path, json={"instances": [ROW[:2]]})
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST" and "feature order" in r.json()["message"]
    r = http.post(path, content=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415 and set(r.json()) == {"error_code", "message"}
    base = path.removesuffix("/invocations")
    for check in ("/ping", "/health"):
        assert http.get(base + check).status_code == 200
    assert http.get(base + "/version").text == "0.1.0"
    r = http.post("/models/no-such-model/invocations", json=MLFLOW_BODIES[0])
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
