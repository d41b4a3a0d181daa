"""Online serving: models by id/name/version, cached but never stale, no database write per request."""

import asyncio
import io
import json
import sqlite3
from pathlib import Path

import pytest

from kubepredict.bootstrap import bootstrap
from kubepredict.codecs.table import Table
from kubepredict.config import Settings
from kubepredict.errors import Conflict, InvalidInput, ModelNotFound
from kubepredict.runner.worker import run_worker
from kubepredict.runtimes.asgi import AsgiGateway
from kubepredict.runtimes.gateway import Gateway
from kubepredict.services import datasets, serving, training

IRIS = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def svc(tmp_path):
    return bootstrap(Settings(data_dir=tmp_path))


def _train(svc, name: str, algorithm: str = "logistic_regression") -> str:
    ds = datasets.upload_dataset(svc, io.BytesIO(IRIS), name="iris")
    job, _ = training.submit_train(
        svc, {"dataset_id": ds["dataset_id"], "target": "species", "algorithm": algorithm, "name": name}
    )
    assert run_worker(svc, job["job_id"]) == 0
    return job["model_id"]


def test_resolve_by_id_name_and_version(svc):
    first = _train(svc, "flowers")
    second = _train(svc, "flowers", "random_forest")
    assert serving.resolve(svc, first).model_id == first
    assert serving.resolve(svc, "flowers").model_id == second  # the newest ready version
    assert serving.resolve(svc, "flowers/versions/1").model_id == first
    assert serving.resolve(svc, "flowers", version="2").model_id == second
    served = serving.resolve(svc, second)
    assert served.compiled is not None and served.compiled.kind == "tree-classifier"
    result = serving.score(svc, served, Table.from_records([ROW]))
    assert result.predictions.tolist() == ["setosa"] and result.classes == ["setosa", "versicolor", "virginica"]
    with pytest.raises(ModelNotFound):
        serving.resolve(svc, "flowers/versions/3")
    with pytest.raises(ModelNotFound):
        serving.resolve(svc, "mdl_doesnotexist")
    with pytest.raises(InvalidInput):
        serving.resolve(svc, "flowers", version="two")


def test_delete_is_a_404_at_once_and_a_name_moves_to_the_previous_version(svc):
    first = _train(svc, "iris-del")
    second = _train(svc, "iris-del")
    assert serving.resolve(svc, "iris-del").model_id == second  # now cached
    serving.score(svc, serving.resolve(svc, second), Table.from_records([ROW]))
    training.delete_model(svc, second)
    with pytest.raises(ModelNotFound):
        serving.resolve(svc, second)
    assert serving.resolve(svc, "iris-del").model_id == first  # never the deleted (cached) one
    with pytest.raises(ModelNotFound):
        training.delete_model(svc, second)


def test_a_model_in_use_by_a_queued_job_cannot_be_deleted(svc):
    model_id = _train(svc, "busy")
    ds = svc.catalog.list_datasets(limit=1, offset=0)[0][0]
    from kubepredict.services import prediction

    job, _ = prediction.submit_predict(svc, {"model_id": model_id, "dataset_id": ds["dataset_id"]})
    with pytest.raises(Conflict) as err:
        training.delete_model(svc, model_id)
    assert err.value.code == "model_in_use" and err.value.details["job_id"] == job["job_id"]
    assert serving.resolve(svc, model_id).model_id == model_id


def test_a_model_still_training_is_a_409(svc):
    ds = datasets.upload_dataset(svc, io.BytesIO(IRIS), name="iris")
    training.submit_train(svc, {"dataset_id": ds["dataset_id"], "target": "species", "name": "later"})
    with pytest.raises(Conflict) as err:
        serving.resolve(svc, "later")
    assert err.value.code == "model_not_ready"


def _asgi_post(app, path: str, body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "http_version": "1.1",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }
    out = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        out.append(message)

    asyncio.run(app(scope, receive, send))
    return out[0]["status"], b"".join(m.get("body", b"") for m in out[1:])


def test_online_predictions_never_write_to_the_database(svc, tmp_path):
    model_id = _train(svc, "quiet")
    app = AsgiGateway(Gateway(svc))
    body = json.dumps({"model_id": model_id, "instances": [ROW]}).encode()
    status, answer = _asgi_post(app, "/function/predict", body)
    assert status == 200 and json.loads(answer)["predictions"] == ["setosa"]
    watcher = sqlite3.connect(tmp_path / "kubepredict.db")
    before = watcher.execute("PRAGMA data_version").fetchone()[0]
    for _ in range(50):
        assert _asgi_post(app, "/function/predict", body)[0] == 200
    bad = json.dumps({"model_id": model_id, "instances": [{"sepal_length": "x"}]}).encode()
    assert _asgi_post(app, "/function/predict", bad)[0] == 400
    # data_version changes whenever another connection commits a write to the file.
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
    # ...and a write by someone else is seen: the model deleted elsewhere is a 404 on the next call.
    other = bootstrap(Settings(data_dir=tmp_path))
    training.delete_model(other, model_id)
    assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    status, answer = _asgi_post(app, "/function/predict", body)
    assert status == 404 and json.loads(answer)["error"]["code"] == "model_not_found"


def test_batch_bodies_are_not_run_on_the_event_loop(svc):
    """A batch predict writes (a job), so the ASGI front hands it to the WSGI threads; same answer."""
    model_id = _train(svc, "batchy")
    ds = svc.catalog.list_datasets(limit=1, offset=0)[0][0]
    app = AsgiGateway(Gateway(svc))
    calls = []
    real = app.threaded

    async def threaded(scope, receive, send):
        calls.append(scope["path"])
        await real(scope, receive, send)

    app.threaded = threaded
    status, answer = _asgi_post(
        app, "/function/predict", json.dumps({"model_id": model_id, "dataset_id": ds["dataset_id"]}).encode()
    )
    assert status == 202 and json.loads(answer)["job_id"].startswith("job_")
    assert calls == ["/function/predict"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/{name}/infer",
        "/function/predict/v2/models/{name}/infer",
        "/v1/models/{name}:predict",
        "/models/{name}/invocations",
    ],
)
def test_event_loop_path_answers_like_the_threaded_path(svc, path):
    """The ASGI front's direct calls give the WSGI gateway's exact answers, errors included."""
    from werkzeug.test import Client

    _train(svc, "same")
    gateway = Gateway(svc)
    app = AsgiGateway(gateway)
    path = path.format(name="same")
    if path.startswith(("/v2", "/function")):
        good = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
        bad = {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": ["x"]}]}
    elif path.startswith("/v1"):
        good, bad = {"instances": [ROW]}, {"instances": "nope"}
    else:
        good, bad = {"dataframe_records": [ROW]}, {"dataframe_records": [{"sepal_length": "x"}]}
    for body in (good, bad):
        raw = json.dumps(body).encode()
        direct = _asgi_post(app, path, raw)
        threaded = Client(gateway).post(path, data=raw, headers={"Content-Type": "application/json"})
        assert direct == (threaded.status_code, threaded.get_data()), path
    assert _asgi_post(app, path, json.dumps(good).encode())[0] == 200
    assert _asgi_post(app, path, json.dumps(bad).encode())[0] == 400
