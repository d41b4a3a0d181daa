"""A real one-node cluster (tests/services/kube_node.py): pods run on a real kubelet through containerd.

kube-apiserver + etcd (as in test_kube_apiserver.py), kube-controller-manager, kube-scheduler and the
kubelet from the same Kubernetes version, containerd 1.6 with the CRI plugin and a bridge CNI network,
the pod sandbox image and our base image built locally (scripts/images.sh). Missing pieces skip (fail
under CI=true), as for the other real services.

The tests drive the real Dispatcher and KubernetesJobRunner in this process (train, OOMKilled, image pull,
pod deleted mid-run, cancel, sharded predict as an Indexed Job), then apply infra/test-node with kubectl
and run upload → train → predict → result over HTTP against the dispatcher and function pods.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import time

import pytest

from tests.services import ServiceStartError, ServiceUnavailable, in_ci
from tests.services.kube_apiserver import KubeAPIServer
from tests.services.kube_node import POD_API_PORT, POD_DB_PORT, POD_S3_PORT, KubeNode, images_env

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def node(request):
    started = []
    request.addfinalizer(lambda: [s.stop() for s in reversed(started)])
    why = None
    try:
        started.append(KubeAPIServer().start())
        started.append(KubeNode(started[0]).start())
    except ServiceUnavailable as exc:
        why = str(exc)
    except ServiceStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    if why:
        if in_ci():
            pytest.fail(f"one-node cluster unavailable: {why} (CI=true)", pytrace=False)
        pytest.skip(f"one-node cluster unavailable: {why}")
    return started[1]


def test_a_pod_from_our_base_image_runs_to_completion(node):
    base = images_env()["BASE_IMAGE"]
    import_seconds = node.load_image(base)
    name = f"trivial-{int(time.time())}"
    out = node.run_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
                "containers": [
                    {
                        "name": "main",
                        "image": base,
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", "import os; print('uid', os.getuid()); open('/tmp/x', 'w')"],
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }
    )
    print(f"\n[kube-node] base image import {import_seconds:.1f} s; pod created→finished {out['seconds']:.1f} s")
    assert out["phase"] == "Succeeded" and out["exit_code"] == 0, (out, node.kubelet_errors())
    assert out["log"].strip() == "uid 10001", out
    assert out["pod_ip"] and out["pod_ip"].startswith("10.244.0."), out


def _csv(rows: int = 90) -> bytes:
    lines = ["x1,x2,colour,label"]
    for i in range(rows):
        x1, x2 = (i * 37 % 100) / 10, (i * 53 % 100) / 10
        lines.append(f"{x1:.1f},{x2:.1f},{('red', 'green', 'blue')[i % 3]},{'yes' if x1 + x2 > 9 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def jobs(node, postgres_server, s3_server):
    """infra/base's namespace, RBAC and ConfigMap plus the Secrets on the cluster; the job image on the node;
    the real Dispatcher driving KubernetesJobRunner with the runner ServiceAccount's token."""
    import io
    from urllib.parse import urlsplit, urlunsplit

    import yaml
    from kubernetes import client, utils

    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.runner.dispatcher import Dispatcher
    from kubepredict.runner.kubernetes import KubernetesJobRunner
    from kubepredict.services.datasets import upload_dataset
    from tests.services import REPO_ROOT

    # the images from this checkout (warm: ~10 s): the dispatcher pod below runs the job image's code
    t0 = time.monotonic()
    build = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/images.sh"), "build"], capture_output=True, text=True, timeout=3600
    )
    if build.returncode != 0:
        pytest.fail(f"scripts/images.sh build failed:\n{build.stderr[-4000:]}", pytrace=False)
    print(f"\n[kube-node] scripts/images.sh build {time.monotonic() - t0:.1f} s")
    job_image = images_env()["JOB_IMAGE"]
    import_seconds = node.load_image(job_image)
    print(f"\n[kube-node] job image import {import_seconds:.1f} s")
    database_url = postgres_server.create_database()
    # the bucket and host ports infra/test-node names, so its dispatcher and functions share this state
    bucket = "kubepredict"
    with contextlib.suppress(Exception):  # an earlier module on the same S3 server made it
        s3_server.create_bucket(bucket)
    settings = Settings(
        database_url=database_url,
        storage_url=f"s3://{bucket}/data",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
        s3_addressing_style="path",
        runner="kubernetes",
        namespace="kubepredict",
        job_image=job_image,
        max_concurrent_jobs=1,
    )
    svc = bootstrap(settings)
    # what pods see: the same services through the bridge
    db = urlsplit(database_url)
    pod_db_url = urlunsplit(db._replace(netloc=f"{db.username}@{node.expose(db.port, POD_DB_PORT)}"))
    pod_s3 = "http://" + node.expose(urlsplit(s3_server.endpoint_url).port, POD_S3_PORT)
    admin = node.kube.api_client("admin")
    docs = [
        d
        for f in ("infra/base/namespace.yaml", "infra/base/rbac.yaml", "infra/base/configmap.yaml")
        for d in yaml.safe_load_all((REPO_ROOT / f).read_text())
        if d
    ]
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            doc["data"].update(
                {
                    "KUBEPREDICT_JOB_IMAGE": job_image,
                    "KUBEPREDICT_STORAGE_URL": settings.storage_url,
                    "KUBEPREDICT_S3_ENDPOINT_URL": pod_s3,
                    "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS": "",
                }
            )
        utils.create_from_dict(admin, doc)
    core = client.CoreV1Api(admin)
    core.create_namespaced_secret(
        "kubepredict",
        {"metadata": {"name": "kubepredict-database-url"}, "stringData": {"kubepredict-database-url": pod_db_url}},
    )
    core.create_namespaced_secret(
        "kubepredict",
        {
            "metadata": {"name": "kubepredict-s3-credentials"},
            "stringData": {
                "kubepredict-s3-access-key-id": s3_server.access_key_id,
                "kubepredict-s3-secret-access-key": s3_server.secret_access_key,
            },
        },
    )
    runner = KubernetesJobRunner.from_settings(settings, api_client=node.kube.api_client("runner"))
    dispatcher = Dispatcher(svc.catalog, runner, settings)
    lost: list[tuple] = []
    reported = runner.on_lost
    runner.on_lost = lambda *args: (reported(*args), lost.append(args))
    runner.start()
    dataset = upload_dataset(svc, io.BytesIO(_csv()), name="node-it")
    try:
        yield {
            "svc": svc,
            "runner": runner,
            "dispatcher": dispatcher,
            "core": core,
            "dataset": dataset,
            "job_image": job_image,
            "lost": lost,
            "settings": settings,
            "database_url": database_url,
            "pod_db_url": pod_db_url,
        }
    finally:
        runner.close()
        svc.catalog.dispose()
        postgres_server.drop_database(database_url)


def _run_until(jobs, job_id: str, until, timeout: float = 300.0) -> float:
    """Dispatcher rounds until ``until(job)``; returns the seconds taken."""
    t0 = time.monotonic()
    while not until(jobs["svc"].catalog.get_job(job_id)):
        assert time.monotonic() - t0 < timeout, jobs["svc"].catalog.get_job(job_id)
        jobs["dispatcher"].tick()
        time.sleep(0.5)
    return time.monotonic() - t0


def client_batch(jobs):
    from kubernetes import client

    return client.BatchV1Api(jobs["core"].api_client)


def _pods(jobs, job_id: str):
    return jobs["core"].list_namespaced_pod("kubepredict", label_selector=f"kubepredict.io/job-id={job_id}").items


def test_train_job_from_the_job_runner_runs_as_a_real_pod(node, jobs):
    """The Dispatcher claims a train job; KubernetesJobRunner (the ServiceAccount's token) creates the Job;
    the controller manager makes its pod, the kubelet runs our job image, the worker trains against the
    host's PostgreSQL and S3 (reached through the bridge), and the job succeeds."""
    from kubepredict.services.training import submit_train

    job, _ = submit_train(
        jobs["svc"],
        {
            "dataset_id": jobs["dataset"]["dataset_id"],
            "target": "label",
            "algorithm": "random_forest",
            "params": {"n_estimators": 20},
        },
    )
    assert jobs["dispatcher"].tick() == 1
    seconds = _run_until(jobs, job["job_id"], lambda j: j["status"] not in ("queued", "running"))
    final = jobs["svc"].catalog.get_job(job["job_id"])
    pods = _pods(jobs, job["job_id"])
    print(f"\n[kube-node] train job dispatched→{final['status']} {seconds:.1f} s")
    assert final["status"] == "succeeded", (
        final,
        node.kubelet_errors(),
        [node.pod_log("kubepredict", p.metadata.name) for p in pods],
    )
    (pod,) = pods
    # the worker records success just before its process exits: the pod follows a moment later
    for _ in range(120):
        pod = jobs["core"].read_namespaced_pod(pod.metadata.name, "kubepredict")
        if pod.status.phase != "Running":
            break
        time.sleep(0.5)
    assert pod.status.phase == "Succeeded" and pod.spec.node_name == "kp-node", pod.status
    assert pod.spec.containers[0].image == jobs["job_image"]


def test_job_over_its_memory_limit_is_oomkilled_by_the_kubelet_and_retried(node, jobs):
    """A 48Mi memory limit: the real kernel kills the worker, the runner reports OOMKilled, the job is
    requeued for its second attempt, which is OOMKilled too, and the job fails with oom_killed."""
    from kubepredict.services.training import submit_train

    job, _ = submit_train(
        jobs["svc"],
        {
            "dataset_id": jobs["dataset"]["dataset_id"],
            "target": "label",
            "algorithm": "random_forest",
            "resources": {"requests": {"memory": "48Mi"}, "limits": {"memory": "48Mi"}},
        },
    )
    _run_until(jobs, job["job_id"], lambda j: j["status"] not in ("queued", "running"))
    final = jobs["svc"].catalog.get_job(job["job_id"])
    mine = [entry for entry in jobs["lost"] if entry[0] == job["job_id"]]
    assert [(attempt, code) for _, attempt, code, *_ in mine][:1] == [(1, "oom_killed")], (mine, final)
    assert "OOMKilled" in mine[0][3], mine
    assert final["status"] == "failed" and final["error"]["code"] == "oom_killed", final
    assert final["attempt"] == 2, final


def test_job_whose_image_does_not_exist_ends_with_an_image_pull_reason(node, jobs):
    """The kubelet cannot pull the image (no such image, no registry): the runner reports image_pull_failed
    with the image's name, and the job ends failed with that code (every attempt fails the same way)."""
    import dataclasses

    from kubepredict.services.training import submit_train

    runner = jobs["runner"]
    template = runner.template
    missing = "localhost/kubepredict/missing:none"
    runner.template = dataclasses.replace(template, image=missing)
    try:
        job, _ = submit_train(jobs["svc"], {"dataset_id": jobs["dataset"]["dataset_id"], "target": "label"})
        _run_until(jobs, job["job_id"], lambda j: j["status"] not in ("queued", "running"))
    finally:
        runner.template = template
    final = jobs["svc"].catalog.get_job(job["job_id"])
    mine = [entry for entry in jobs["lost"] if entry[0] == job["job_id"]]
    assert mine and mine[0][2] == "image_pull_failed", (mine, final)
    assert missing in mine[0][3] and "cannot pull image" in mine[0][3], mine
    assert final["status"] == "failed" and final["error"]["code"] == "image_pull_failed", final


def _slow_train(jobs):
    """A train job that runs for several seconds (a 20 000-row dataset, 300 trees): time to act on its pod."""
    from kubepredict.services.datasets import upload_dataset
    from kubepredict.services.training import submit_train

    if "slow_dataset" not in jobs:
        jobs["slow_dataset"] = upload_dataset(jobs["svc"], io.BytesIO(_csv(20_000)), name="node-it-slow")
    job, _ = submit_train(
        jobs["svc"],
        {
            "dataset_id": jobs["slow_dataset"]["dataset_id"],
            "target": "label",
            "algorithm": "random_forest",
            "params": {"n_estimators": 300},
        },
    )
    return job


def _running_pod(jobs, job_id: str, timeout: float = 180.0):
    """Dispatcher rounds until the job's pod runs its container and the worker has claimed the attempt."""
    t0 = time.monotonic()
    while True:
        jobs["dispatcher"].tick()
        job = jobs["svc"].catalog.get_job(job_id)
        running = [
            p for p in _pods(jobs, job_id) if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
        ]
        # the worker records itself as "<hostname = pod name>:<pid>" once it has taken the attempt
        if running and job["status"] == "running" and (job.get("worker") or "").startswith(running[0].metadata.name):
            return running[0]
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() - t0 < timeout, (job, [p.status.phase for p in _pods(jobs, job_id)])
        time.sleep(0.5)


def test_pod_deleted_mid_run_is_detected_and_retried(node, jobs):
    """`kubectl delete pod` while the worker trains: the kubelet stops the container (SIGTERM), the worker
    records the lost attempt, the job is requeued, the Job runner starts attempt 2 as a new pod, and the
    job succeeds."""
    job = _slow_train(jobs)
    first = _running_pod(jobs, job["job_id"])
    jobs["core"].delete_namespaced_pod(first.metadata.name, "kubepredict")
    requeued = _run_until(jobs, job["job_id"], lambda j: j["attempt"] >= 2 or j["status"] not in ("queued", "running"))
    mid = jobs["svc"].catalog.get_job(job["job_id"])
    assert mid["attempt"] == 2 or mid["status"] == "queued", mid
    seconds = _run_until(jobs, job["job_id"], lambda j: j["status"] not in ("queued", "running"))
    final = jobs["svc"].catalog.get_job(job["job_id"])
    pods = _pods(jobs, job["job_id"])
    print(f"\n[kube-node] pod deleted → requeued {requeued:.1f} s; attempt 2 → {final['status']} {seconds:.1f} s")
    assert final["status"] == "succeeded" and final["attempt"] == 2, (final, node.kubelet_errors())
    assert first.metadata.name not in [p.metadata.name for p in pods]
    assert [p.metadata.labels["kubepredict.io/attempt"] for p in pods] == ["2"], [p.metadata.name for p in pods]


def test_cancelling_a_running_job_deletes_its_pod(node, jobs):
    """The user cancels while the pod runs: the next Dispatcher round sees the job no longer running and
    the runner deletes its Job, whose pod the kubelet then stops and the API server removes."""
    job = _slow_train(jobs)
    pod = _running_pod(jobs, job["job_id"])
    jobs["svc"].catalog.cancel(job["job_id"])
    t0 = time.monotonic()
    while _pods(jobs, job["job_id"]):
        assert time.monotonic() - t0 < 120, [(p.metadata.name, p.status.phase) for p in _pods(jobs, job["job_id"])]
        jobs["dispatcher"].tick()
        time.sleep(0.5)
    gone = time.monotonic() - t0
    print(f"\n[kube-node] cancelled → pod {pod.metadata.name} gone {gone:.1f} s")
    batch = client_batch(jobs)
    assert not batch.list_namespaced_job("kubepredict", label_selector=f"kubepredict.io/job-id={job['job_id']}").items
    assert jobs["svc"].catalog.get_job(job["job_id"])["status"] == "cancelled"
    assert jobs["runner"].running_ids() == []


def test_sharded_predict_runs_as_an_indexed_job_with_one_pod_per_shard(node, jobs):
    """A 3-shard batch predict is one Indexed Job (completions 3); the controller manager makes one pod per
    completion index, each claims its shard, and the predictions equal those of the unsharded job."""
    from kubepredict.services.prediction import submit_predict
    from kubepredict.services.results import job_with_predictions
    from kubepredict.services.training import submit_train

    finished = lambda j: j["status"] not in ("queued", "running")  # noqa: E731
    dataset_id = jobs["dataset"]["dataset_id"]
    trained, _ = submit_train(
        jobs["svc"],
        {"dataset_id": dataset_id, "target": "label", "algorithm": "random_forest", "params": {"n_estimators": 20}},
    )
    _run_until(jobs, trained["job_id"], finished)
    assert jobs["svc"].catalog.get_job(trained["job_id"])["status"] == "succeeded"
    whole, _ = submit_predict(jobs["svc"], {"model_id": trained["model_id"], "dataset_id": dataset_id})
    _run_until(jobs, whole["job_id"], finished)
    sharded, _ = submit_predict(jobs["svc"], {"model_id": trained["model_id"], "dataset_id": dataset_id, "shards": 3})
    seconds = _run_until(jobs, sharded["job_id"], finished)
    a = job_with_predictions(jobs["svc"], whole["job_id"], limit=1000)
    b = job_with_predictions(jobs["svc"], sharded["job_id"], limit=1000)
    print(f"\n[kube-node] 3-shard predict dispatched→{b['status']} {seconds:.1f} s")
    pods = _pods(jobs, sharded["job_id"])
    assert a["status"] == b["status"] == "succeeded", (
        a,
        b,
        [node.pod_log("kubepredict", p.metadata.name) for p in pods],
    )
    assert [s["status"] for s in b["shard_status"]] == ["succeeded"] * 3, b["shard_status"]
    assert a["predictions"]["total"] == b["predictions"]["total"] == 90
    assert a["predictions"]["rows"] == b["predictions"]["rows"]
    (job,) = (
        client_batch(jobs)
        .list_namespaced_job("kubepredict", label_selector=f"kubepredict.io/job-id={sharded['job_id']}")
        .items
    )
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 3, job.spec
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"], [(p.metadata.name, p.status.phase) for p in pods]
    for _ in range(120):  # each worker records its shard just before its process exits
        pods = _pods(jobs, sharded["job_id"])
        if all(p.status.phase == "Succeeded" for p in pods):
            break
        time.sleep(0.5)
    assert {(p.status.phase, p.spec.node_name) for p in pods} == {("Succeeded", "kp-node")}


# -- infra/test-node applied with kubectl: the dispatcher and the four functions as pods --------------------

DEPLOYMENTS = ("kubepredict-dispatcher", "upload", "train", "predict", "result")
FUNCTIONS = ("upload", "train", "predict", "result")


@pytest.fixture(scope="module")
def deployed(node, jobs, tmp_path_factory):
    """What a user does: the Secrets (infra/secrets' template, values filled in), then
    `kubectl apply -k infra/test-node`, then `kubectl rollout status` for each Deployment. Shares the
    `jobs` fixture's database and bucket (the overlay's names); that fixture's in-process Dispatcher is
    not ticked here, so every job below is claimed by the dispatcher pod."""
    import secrets as pysecrets
    from urllib.parse import urlsplit

    import yaml

    from tests.services import REPO_ROOT

    env = images_env()
    t0 = time.monotonic()
    import_seconds = node.load_image(*(env[f"{fn.upper()}_IMAGE"] for fn in FUNCTIONS))
    print(f"\n[kube-node] four function images import {import_seconds:.1f} s")
    node.expose(urlsplit(node.kube.env["KUBE_SERVER"]).port, POD_API_PORT)
    token = pysecrets.token_urlsafe(24)
    values = {
        "kubepredict-database-url": jobs["pod_db_url"],
        "postgres-password": "unused-the-host-database-trusts-local-users",
        "kubepredict-s3-access-key-id": jobs["settings"].s3_access_key_id,
        "kubepredict-s3-secret-access-key": jobs["settings"].s3_secret_access_key,
        "kubepredict-api-token": token,
    }
    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "infra/secrets/secrets.example.yaml").read_text()) if d]
    for doc in docs:
        doc["stringData"] = {k: values[k] for k in doc["stringData"]}
    secrets_file = tmp_path_factory.mktemp("secrets") / "secrets.yaml"
    secrets_file.write_text(yaml.safe_dump_all(docs))
    node.kubectl("apply", "-f", str(secrets_file))
    applied = node.kubectl("apply", "-k", "infra/test-node").stdout
    t1 = time.monotonic()
    try:
        for name in DEPLOYMENTS:
            node.kubectl("-n", "kubepredict", "rollout", "status", f"deployment/{name}", "--timeout=300s", timeout=320)
    except AssertionError as exc:
        pods = jobs["core"].list_namespaced_pod("kubepredict").items
        logs = {p.metadata.name: node.pod_log("kubepredict", p.metadata.name)[-1500:] for p in pods}
        raise AssertionError(f"{exc}\npods: {logs}\nkubelet: {node.kubelet_errors()}") from exc
    ready = time.monotonic() - t1
    print(f"[kube-node] kubectl apply -k infra/test-node → five Deployments ready {ready:.1f} s")
    urls, pods = {}, {}
    for fn in FUNCTIONS:
        (pod,) = jobs["core"].list_namespaced_pod("kubepredict", label_selector=f"faas_function={fn}").items
        urls[fn], pods[fn] = f"http://{pod.status.pod_ip}:5000", pod.metadata.name
    (dispatcher,) = (
        jobs["core"]
        .list_namespaced_pod("kubepredict", label_selector="app.kubernetes.io/name=kubepredict-dispatcher")
        .items
    )
    try:
        yield {
            "urls": urls,
            "log": lambda fn: node.pod_log("kubepredict", pods[fn])[-3000:],
            "auth": {"Authorization": f"Bearer {token}"},
            "applied": applied,
            "dispatcher": dispatcher,
            "seconds": time.monotonic() - t0,
        }
    finally:
        with contextlib.suppress(Exception):
            node.kubectl("-n", "kubepredict", "delete", "deployment", *DEPLOYMENTS, "--timeout=60s", timeout=90)


def _wait_http(deployed, job_id: str, timeout: float = 300.0) -> dict:
    import httpx

    t0 = time.monotonic()
    while True:
        r = httpx.get(f"{deployed['urls']['result']}/{job_id}", headers=deployed["auth"], timeout=30)
        assert r.status_code == 200, r.text + deployed["log"]("result")
        if r.json()["status"] not in ("queued", "running"):
            return r.json()
        assert time.monotonic() - t0 < timeout, r.json()
        time.sleep(1)


def test_infra_overlay_deploys_and_serves_upload_train_predict_result_over_http(node, jobs, deployed):
    """Over HTTP to the function pods' IPs: upload a CSV, train (the dispatcher pod's Job runner, under the
    kubepredict-runner ServiceAccount, starts the train Job: a real pod), predict online, then a batch
    predict (another Job, another pod), and read the job and its predictions from the result function."""
    import httpx

    urls, auth = deployed["urls"], deployed["auth"]
    assert "deployment.apps/kubepredict-dispatcher created" in deployed["applied"], deployed["applied"]
    assert deployed["dispatcher"].spec.service_account_name == "kubepredict-runner"
    anonymous = httpx.post(f"{urls['train']}/", json={}, timeout=30)
    log = deployed["log"]
    assert anonymous.status_code == 401, anonymous.text + log("train")  # the api-token Secret is mounted
    up = httpx.post(
        f"{urls['upload']}/?name=node-http",
        content=_csv(),
        headers={**auth, "Content-Type": "text/csv"},
        timeout=60,
    )
    assert up.status_code == 201, up.text + log("upload")
    dataset_id = up.json()["dataset_id"]
    t0 = time.monotonic()
    train = httpx.post(
        f"{urls['train']}/",
        json={
            "dataset_id": dataset_id,
            "target": "label",
            "algorithm": "random_forest",
            "params": {"n_estimators": 20},
        },
        headers=auth,
        timeout=60,
    )
    assert train.status_code == 202, train.text + log("train")
    trained = _wait_http(deployed, train.json()["job_id"])
    train_seconds = time.monotonic() - t0
    dispatcher_log = node.pod_log("kubepredict", deployed["dispatcher"].metadata.name)
    assert trained["status"] == "succeeded", (trained, dispatcher_log[-3000:])
    online = httpx.post(
        f"{urls['predict']}/",
        json={
            "model_id": train.json()["model_id"],
            "instances": [{"x1": 9.0, "x2": 8.0, "colour": "red"}, {"x1": 0.5, "x2": 1.0, "colour": "blue"}],
        },
        headers=auth,
        timeout=60,
    )
    assert online.status_code == 200, online.text + log("predict")
    assert online.json()["predictions"] == ["yes", "no"], online.json()
    t0 = time.monotonic()
    batch = httpx.post(
        f"{urls['predict']}/", json={"model_id": train.json()["model_id"], "dataset_id": dataset_id}, headers=auth
    )
    assert batch.status_code == 202, batch.text + log("predict")
    predicted = _wait_http(deployed, batch.json()["job_id"])
    predict_seconds = time.monotonic() - t0
    assert predicted["status"] == "succeeded", predicted
    assert predicted["predictions"]["total"] == 90, predicted["predictions"]
    assert {r["prediction"] for r in predicted["predictions"]["rows"]} <= {"yes", "no"}
    print(
        f"\n[kube-node] over HTTP: train queued→succeeded {train_seconds:.1f} s, batch predict {predict_seconds:.1f} s"
    )
    # both Jobs were created by the dispatcher pod (not by this process's runner), and ran as pods on the node
    dispatcher_log = node.pod_log("kubepredict", deployed["dispatcher"].metadata.name)
    for job_id, kind in ((train.json()["job_id"], "train"), (batch.json()["job_id"], "predict")):
        assert job_id not in jobs["runner"].running_ids()
        (job,) = (
            client_batch(jobs)
            .list_namespaced_job("kubepredict", label_selector=f"kubepredict.io/job-id={job_id}")
            .items
        )
        assert f"created Job kubepredict/{job.metadata.name}" in dispatcher_log, dispatcher_log[-3000:]
        assert job.spec.template.spec.containers[0].image == images_env()["JOB_IMAGE"]
        pods = _pods(jobs, job_id)
        assert pods and {p.spec.node_name for p in pods} == {"kp-node"}, pods
        assert {p.metadata.labels["kubepredict.io/kind"] for p in pods} == {kind}
    # the dispatcher ran throughout (no readiness probe in infra/base: Ready alone would not prove it)
    restarts = [
        p.status.container_statuses[0].restart_count
        for p in jobs["core"].list_namespaced_pod("kubepredict", label_selector="app.kubernetes.io/component").items
        if p.metadata.labels.get("app.kubernetes.io/name") in DEPLOYMENTS
    ]
    assert restarts == [0] * 5, restarts
