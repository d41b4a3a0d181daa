"""Aliases, the promotion gate, bundles and ``kubepredict verify`` over HTTP, on both backend sets."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.e2e.api import Api
from tests.gateway_process import REPO

pytestmark = pytest.mark.e2e

IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_text()
ROW = {"sepal_length": 6.3, "sepal_width": 2.9, "petal_length": 5.6, "petal_width": 1.8}


@pytest.fixture(scope="module")
def registry(gateway_proc, backend):
    """Two versions of one name, trained on iris: v1 a forest, v2 a one-split tree (worse)."""
    api = Api(gateway_proc.url)
    ds = api.upload(IRIS, "iris-registry")["dataset_id"]
    name = f"reg-{backend}"
    gate = {"alias": "champion", "metric": "accuracy", "min_gain": 0.01, "dataset_id": ds}
    ids = []
    for algorithm, params in (("random_forest", {"n_estimators": 30}), ("decision_tree", {"max_depth": 1})):
        queued = api.train(dataset_id=ds, target="species", algorithm=algorithm, params=params, name=name, promote=gate)
        job = api.wait(queued["job_id"])
        assert job["status"] == "succeeded", job
        ids.append((queued["model_id"], job))
    return api, name, ds, ids


def _predict(api: Api, ref: str) -> str:
    r = api.http.post("/function/predict", json={"model_id": ref, "instances": [ROW]})
    assert r.status_code == 200, r.text
    return r.json()["model_id"]


def test_promotion_gate_decides_on_the_same_dataset(registry):
    api, name, _, ((v1, job1), (v2, job2)) = registry
    first, second = job1["summary"]["promotion"], job2["summary"]["promotion"]
    assert first["promoted"] and first["champion"] is None
    assert not second["promoted"] and second["champion"]["model_id"] == v1
    assert second["challenger"]["score"] < second["champion"]["score"]  # both scores stored and shown
    aliases = api.http.get(f"/function/train/{name}/aliases").json()["aliases"]
    assert [(a["alias"], a["model_id"]) for a in aliases] == [("champion", v1)]
    assert api.http.get(f"/function/train/{v1}").json()["aliases"] == ["champion"]
    assert _predict(api, name) == v1  # the bare name is the champion, not the newest version


def test_every_protocol_and_batch_take_name_at_alias(registry):
    api, name, ds, ((v1, _), (v2, _)) = registry
    r = api.http.put(f"/function/train/{name}/aliases/staging", json={"version": 2})
    assert r.status_code == 200 and r.json()["model_id"] == v2, r.text
    ref = f"{name}@staging"
    assert _predict(api, ref) == v2
    v2_body = {
        "inputs": [{"name": k, "datatype": "FP64", "shape": [1], "data": [v]} for k, v in ROW.items()],
    }
    r = api.http.post(f"/function/predict/v2/models/{ref}/infer", json=v2_body)
    assert r.status_code == 200 and r.json()["model_name"] == name and r.json()["model_version"] == "2", r.text
    r = api.http.post(f"/function/predict/v1/models/{ref}:predict", json={"instances": [ROW]})
    assert r.status_code == 200, r.text
    r = api.http.post(f"/function/predict/models/{ref}/invocations", json={"dataframe_records": [ROW]})
    assert r.status_code == 200, r.text
    job = api.wait(api.predict(ref, ds)["job_id"])
    assert job["status"] == "succeeded" and job["model_id"] == v2
    assert _predict(api, f"{name}/versions/1") == v1 and _predict(api, v1) == v1


def test_rollback_moves_the_served_model_at_once(registry):
    api, name, _, ((v1, _), (v2, _)) = registry
    assert _predict(api, name) == v1  # warms the cache
    assert api.http.put(f"/function/train/{name}/aliases/champion", json={"model_id": v2}).status_code == 200
    assert _predict(api, name) == v2
    assert api.http.put(f"/function/train/{name}/aliases/champion", json={"version": 1}).status_code == 200
    assert _predict(api, name) == v1


def test_bad_alias_requests_are_4xx_and_change_nothing(registry, gateway_url):
    api, name, ds, ((v1, _), _) = registry
    other = api.train(dataset_id=ds, target="species", algorithm="logistic_regression", name=f"{name}-other")
    assert api.wait(other["job_id"])["status"] == "succeeded"
    before = api.http.get(f"/function/train/{name}/aliases").json()
    cases = [
        ("PUT", f"/function/train/{name}/aliases/Bad!", {"version": 1}, 400, "invalid_alias"),
        ("PUT", f"/function/train/{name}/aliases/champion", {"model_id": other["model_id"]}, 409, "alias_wrong_name"),
        ("PUT", f"/function/train/{name}/aliases/champion", {"version": 99}, 404, "model_not_found"),
        ("PUT", f"/function/train/{name}/aliases/champion", {}, 400, "invalid_field"),
        ("PUT", f"/function/train/{name}/aliases/champion", {"version": "1"}, 400, "invalid_field"),
        ("DELETE", f"/function/train/{name}/aliases/nosuch", None, 404, "alias_not_found"),
        ("GET", "/function/train/no-such-name/aliases", None, 404, "model_not_found"),
        ("POST", "/function/predict", {"model_id": f"{name}@nosuch", "instances": [ROW]}, 404, "alias_not_found"),
        ("POST", "/function/predict", {"model_id": f"{name}@nosuch", "dataset_id": ds}, 404, "alias_not_found"),
    ]
    for method, path, body, status, code in cases:
        r = api.http.request(method, path, json=body)
        assert r.status_code == status and r.json()["error"]["code"] == code, (method, path, r.text)
    r = api.http.post(f"/function/predict/v2/models/{name}@nosuch/infer", json={"inputs": []})
    assert r.status_code == 404, r.text
    assert api.http.get(f"/function/train/{name}/aliases").json() == before


def test_bundle_round_trip_tamper_and_verify(registry, gateway_proc):
    api, name, _, ((v1, _), _) = registry
    r = api.http.get(f"/function/train/{v1}/bundle")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    bundle = r.content
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        manifest = json.loads(z.read("manifest.json"))
        files = {n: z.read(n) for n in z.namelist()}
    assert manifest["training_request"]["random_state"] == 0 and manifest["dataset"]["sha256"]
    imported = api.http.post(
        "/function/train/import",
        params={"name": f"{name}-imported"},
        content=bundle,
        headers={"Content-Type": "application/zip"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["sha256"] == manifest["artifact"]["sha256"]
    r = api.http.post("/function/predict", json={"model_id": f"{name}-imported", "instances": [ROW]})
    assert r.status_code == 200 and r.json()["predictions"] == ["virginica"]

    total = api.http.get("/function/train", params={"limit": 1}).json()["total"]
    art = bytearray(files["model.skops"])
    art[100] ^= 0xFF
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in {**files, "model.skops": bytes(art)}.items():
            z.writestr(n, b)
    r = api.http.post("/function/train/import", content=out.getvalue(), headers={"Content-Type": "application/zip"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bundle_tampered", r.text
    r = api.http.post("/function/train/import", content=b"nope", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415
    assert api.http.get("/function/train", params={"limit": 1}).json()["total"] == total  # nothing stored

    env = {**gateway_proc.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "kubepredict.cli", "verify", v1, "--data-dir", str(gateway_proc.data_dir)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["identical"] is True


def _cli(gateway_proc, *args: str) -> subprocess.CompletedProcess:
    env = {**gateway_proc.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "kubepredict.cli", *args, "--gateway", gateway_proc.url],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_alias_bundle_and_import(registry, gateway_proc, tmp_path):
    api, name, _, ((v1, _), (v2, _)) = registry
    moved = _cli(gateway_proc, "alias", name, "canary", "2")
    assert moved.returncode == 0 and f"{name}@canary -> v2" in moved.stdout, moved.stderr
    listed = _cli(gateway_proc, "alias", name)
    assert listed.returncode == 0 and "canary" in listed.stdout, listed.stderr
    assert _predict(api, f"{name}@canary") == v2
    assert _cli(gateway_proc, "alias", name, "canary", "--delete").returncode == 0
    bad = _cli(gateway_proc, "alias", name, "canary", "--delete")
    assert bad.returncode == 1 and "no alias" in bad.stderr
    out = tmp_path / "model.zip"
    assert _cli(gateway_proc, "bundle", v1, "-o", str(out)).returncode == 0 and zipfile.is_zipfile(out)
    imported = _cli(gateway_proc, "import", str(out), "--name", f"{name}-cli")
    assert imported.returncode == 0 and f"{name}-cli v1  ready" in imported.stdout, imported.stderr


def test_two_concurrent_promotions_leave_the_alias_on_the_better_version(registry, backend):
    api, _, ds, _ = registry
    name = f"race-{backend}"
    gate = {"metric": "accuracy", "min_gain": 0.0, "dataset_id": ds}
    queued = [
        api.train(dataset_id=ds, target="species", algorithm=a, params=p, name=name, promote=gate)
        for a, p in (("decision_tree", {"max_depth": 1}), ("random_forest", {"n_estimators": 30}))
    ]  # both queued at once; the session gateway runs two jobs at a time
    jobs = [api.wait(q["job_id"]) for q in queued]
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    score = {j["model_id"]: j["summary"]["promotion"]["challenger"]["score"] for j in jobs}
    holder = api.http.get(f"/function/train/{name}/aliases").json()["aliases"][0]["model_id"]
    assert score[holder] == max(score.values()), (holder, score)  # never the version that lost
    decisions = [j["summary"]["promotion"] for j in jobs]
    assert sum(d["promoted"] for d in decisions) in (1, 2)
