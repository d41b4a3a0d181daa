"""KubernetesJobRunner against a fake Kubernetes API server at the HTTP level (the real client, unpatched)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("kubernetes")

from kubernetes import client

from kubepredict import errors
from kubepredict.runner.base import JobSpec
from kubepredict.runner.k8s_manifest import JobTemplate, build_job, job_name
from kubepredict.runner.kubernetes import KubernetesJobRunner

NS = "kubepredict"
JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?P<log>/log)?)?$")


def _matches(selector: str, labels: dict) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if key not in labels or ("=" in term and labels[key] != value):
            return False
    return True


class FakeKubeAPI:
    """Just enough of kube-apiserver: jobs create/get/list/watch/delete, pods list/watch, pods/log get."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, dict]] = {"jobs": {}, "pods": {}}
        self.requests: list[dict] = []
        self.fail: tuple[int, str] | None = None
        self.watch_events: dict[str, list[dict]] = {"jobs": [], "pods": []}
        self.logs: dict[str, str] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, body, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                api.requests.append({"method": method, "path": url.path, "query": query, "body": body})
                if api.fail:
                    code, reason = api.fail
                    return self._status(code, reason, f"injected {code}")
                m = JOBS.match(url.path) or PODS.match(url.path)
                if not m or m["ns"] != NS:
                    return self._status(404, "NotFound", f"no route {url.path}")
                kind = "jobs" if "/jobs" in url.path else "pods"
                items, name = api.store[kind], m["name"]
                if method == "POST" and kind == "jobs" and not name:
                    jname = body["metadata"]["name"]
                    if jname in items:
                        return self._status(409, "AlreadyExists", f'jobs.batch "{jname}" already exists')
                    body["metadata"].update(uid=f"uid-{len(items)}", resourceVersion="1")
                    body["status"] = {}
                    items[jname] = body
                    return self._send(201, body)
                if method == "GET" and name and m.groupdict().get("log"):
                    return self._send(200, api.logs.get(name, ""), "text/plain")
                if method == "GET" and name:
                    if name not in items:
                        return self._status(404, "NotFound", f'{kind} "{name}" not found')
                    return self._send(200, items[name])
                if method == "GET" and query.get("watch") in ("true", "True", "1"):
                    lines = "".join(json.dumps(e) + "\n" for e in api.watch_events[kind])
                    return self._send(200, lines)
                if method == "GET":
                    selected = [
                        o
                        for o in items.values()
                        if _matches(query.get("labelSelector", ""), o["metadata"].get("labels") or {})
                    ]
                    list_kind = "JobList" if kind == "jobs" else "PodList"
                    return self._send(
                        200,
                        {
                            "kind": list_kind,
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": "9"},
                            "items": selected,
                        },
                    )
                if method == "DELETE" and kind == "jobs" and name:
                    if items.pop(name, None) is None:
                        return self._status(404, "NotFound", f'jobs.batch "{name}" not found')
                    return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                return self._status(405, "MethodNotAllowed", f"{method} {url.path}")

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_pod(self, job: dict, status: dict, suffix: str = "abcde") -> dict:
        """Add a pod owned by ``job`` (as the Job controller would) with the given status."""
        meta = job["spec"]["template"]["metadata"]
        name = f"{job['metadata']['name']}-{suffix}"
        labels = dict(meta["labels"], **{"batch.kubernetes.io/job-name": job["metadata"]["name"]})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": dict(meta["annotations"])},
            "spec": job["spec"]["template"]["spec"],
            "status": status,
        }
        self.store["pods"][name] = pod
        return pod


@pytest.fixture()
def api():
    fake = FakeKubeAPI()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture()
def lost():
    return []


@pytest.fixture()
def runner(api, lost):
    cfg = client.Configuration()
    cfg.host = api.url
    cfg.retries = False
    template = JobTemplate(
        image="ghcr.io/kubepredict/job:0.1.0", namespace=NS, max_resources={"cpu": "4", "memory": "8Gi"}
    )
    r = KubernetesJobRunner(
        template, api_client=client.ApiClient(cfg), log_tail_lines=5, on_lost=lambda *args: lost.append(args)
    )
    yield r
    r.close()


def _posted_job(api) -> dict:
    posts = [r for r in api.requests if r["method"] == "POST"]
    assert len(posts) == 1
    return posts[0]["body"]


def _fail_job(job: dict, reason: str, message: str) -> None:
    job["status"] = {
        "failed": 1,
        "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}],
    }


def test_submit_posts_a_worker_job(api, runner):
    runner.submit(JobSpec(job_id="job_01HZX8V3K6TQ", kind="train", attempt=2))
    body = _posted_job(api)
    meta, spec = body["metadata"], body["spec"]
    assert body["apiVersion"] == "batch/v1" and body["kind"] == "Job"
    assert meta["name"] == job_name("job_01HZX8V3K6TQ", "train", 2)
    assert len(meta["name"]) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"])
    assert meta["labels"]["app.kubernetes.io/name"] == "kubepredict"
    assert meta["labels"]["kubepredict.io/kind"] == "train"
    assert meta["labels"]["kubepredict.io/job-id"] == "job_01HZX8V3K6TQ"
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"]["kubepredict.io/job-id"] == "job_01HZX8V3K6TQ"
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/kubepredict/job:0.1.0"
    assert container["command"] == ["kubepredict", "worker", "job_01HZX8V3K6TQ", "--attempt", "2"]
    assert container["envFrom"] == [{"configMapRef": {"name": "kubepredict-config"}}]
    assert all("value" in e and "SECRET" not in e["name"].replace("SECRETS_DIR", "") for e in container["env"])
    secret_sources = [
        s["secret"]["name"] for v in pod["volumes"] if "projected" in v for s in v["projected"]["sources"]
    ]
    assert "kubepredict-database-url" in secret_sources
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert runner.running() == 1


def test_train_defaults_bigger_than_predict_and_overrides_bounded():
    template = JobTemplate(image="img", max_resources={"cpu": "4", "memory": "8Gi"})
    train = build_job(JobSpec("job_a", "train"), template)["spec"]["template"]["spec"]["containers"][0]["resources"]
    predict = build_job(JobSpec("job_a", "predict"), template)["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert train["limits"]["memory"] == "4Gi" and predict["limits"]["memory"] == "2Gi"
    custom = build_job(JobSpec("job_a", "train", resources={"requests": {"memory": "6Gi"}}), template)
    res = custom["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["memory"] == "6Gi" and res["limits"]["memory"] == "6Gi"
    with pytest.raises(errors.InvalidInput, match="exceeds the maximum"):
        build_job(JobSpec("job_a", "train", resources={"limits": {"memory": "9Gi"}}), template)
    with pytest.raises(errors.InvalidInput):
        build_job(JobSpec("job_a", "train", resources={"limits": {"nvidia.com/gpu": "1"}}), template)
    with pytest.raises(errors.InvalidInput):
        build_job(JobSpec("job_a", "train", resources={"limits": {"cpu": "lots"}}), template)


def test_long_and_odd_job_ids_give_distinct_dns_labels():
    names = {
        job_name("job_" + "X" * 200, "predict", 12),
        job_name("job_" + "X" * 199 + "Y", "predict", 12),
        job_name("job_a", "train", 1),
        job_name("job-a", "train", 1),
    }
    assert len(names) == 4
    for name in names:
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_submit_same_attempt_twice_is_idempotent(api, runner):
    runner.submit(JobSpec(job_id="job_a", kind="predict"))
    runner.submit(JobSpec(job_id="job_a", kind="predict"))
    assert [r["method"] for r in api.requests] == ["POST", "POST", "GET"]
    assert len(api.store["jobs"]) == 1


def test_oom_killed_pod_is_reported(api, runner, lost):
    runner.submit(JobSpec(job_id="job_oom", kind="train"))
    job = api.store["jobs"][job_name("job_oom", "train", 1)]
    _fail_job(job, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    api.add_pod(
        job,
        {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "worker", "image": "img", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ],
        },
    )
    runner.poll()
    runner.poll()  # reported once only
    assert len(lost) == 1
    job_id, attempt, code, message = lost[0]
    assert (job_id, attempt, code) == ("job_oom", 1, "oom_killed") and "OOMKilled" in message
    assert runner.running() == 0


def test_image_pull_failure_is_reported_and_job_deleted(api, runner, lost):
    runner.submit(JobSpec(job_id="job_img", kind="predict"))
    job = api.store["jobs"][job_name("job_img", "predict", 1)]
    api.add_pod(
        job,
        {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "worker",
                    "image": "nope:1",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
                }
            ],
        },
    )
    runner.poll()
    assert [(c[0], c[2]) for c in lost] == [("job_img", "image_pull_failed")]
    deletes = [r for r in api.requests if r["method"] == "DELETE"]
    assert deletes and deletes[0]["query"].get("propagationPolicy") == "Background"


def test_deadline_exceeded_is_reported(api, runner, lost):
    runner.submit(JobSpec(job_id="job_slow", kind="train"))
    job = api.store["jobs"][job_name("job_slow", "train", 1)]
    _fail_job(job, "DeadlineExceeded", "Job was active longer than specified deadline")
    api.add_pod(job, {"phase": "Failed", "reason": "DeadlineExceeded", "message": "deadline"})
    runner.poll()
    assert [(c[0], c[2]) for c in lost] == [("job_slow", "deadline_exceeded")]


def test_failed_pod_reports_exit_code_and_log_tail(api, runner, lost):
    runner.submit(JobSpec(job_id="job_crash", kind="train"))
    job = api.store["jobs"][job_name("job_crash", "train", 1)]
    pod = api.add_pod(
        job,
        {
            "phase": "Failed",
            "containerStatuses": [{"name": "worker", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}],
        },
    )
    api.logs[pod["metadata"]["name"]] = "loading data\nTraceback: boom\n"
    runner.poll()
    ((_, _, code, message),) = lost
    assert code == "pod_failed" and "exit code 3" in message and "boom" in message


def test_evicted_pod_is_reported_through_the_watch(api, runner, lost):
    job = build_job(JobSpec(job_id="job_ev", kind="predict"), runner.template)
    pod = {
        "metadata": {
            "name": "p1",
            "labels": job["spec"]["template"]["metadata"]["labels"],
            "annotations": job["spec"]["template"]["metadata"]["annotations"],
        },
        "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
    }
    api.watch_events["pods"] = [{"type": "ADDED", "object": pod}, {"type": "MODIFIED", "object": pod}]
    assert runner.watch_once("pods", timeout_seconds=2) == 2
    assert [(c[0], c[2]) for c in lost] == [("job_ev", "evicted")]
    watch = [r for r in api.requests if r["query"].get("watch")]
    assert watch and "app.kubernetes.io/name=kubepredict" in watch[0]["query"]["labelSelector"]


def test_deadline_through_the_job_watch(api, runner, lost):
    runner.submit(JobSpec(job_id="job_w", kind="train"))
    job = json.loads(json.dumps(api.store["jobs"][job_name("job_w", "train", 1)]))
    _fail_job(job, "DeadlineExceeded", "Job was active longer than specified deadline")
    api.watch_events["jobs"] = [{"type": "MODIFIED", "object": job}]
    runner.watch_once("jobs", timeout_seconds=2)
    assert [(c[0], c[2]) for c in lost] == [("job_w", "deadline_exceeded")]


def test_succeeded_job_is_not_lost(api, runner, lost):
    runner.submit(JobSpec(job_id="job_ok", kind="train"))
    job = api.store["jobs"][job_name("job_ok", "train", 1)]
    job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    api.add_pod(job, {"phase": "Succeeded"})
    runner.poll()
    assert lost == [] and runner.running() == 0


def test_cancel_deletes_with_background_propagation(api, runner):
    runner.submit(JobSpec(job_id="job_c", kind="train"))
    runner.cancel("job_c")
    deletes = [r for r in api.requests if r["method"] == "DELETE"]
    assert [d["path"].rsplit("/", 1)[1] for d in deletes] == [job_name("job_c", "train", 1)]
    assert deletes[0]["query"].get("propagationPolicy") == "Background"
    assert api.store["jobs"] == {} and runner.running() == 0
    runner.cancel("job_c")  # nothing left: fine
    runner.cancel("job_never_submitted")


def test_forbidden_maps_to_backend_unavailable(api, runner):
    api.fail = (403, "Forbidden")
    with pytest.raises(errors.BackendUnavailable, match="RBAC|Role") as info:
        runner.submit(JobSpec(job_id="job_f", kind="train"))
    assert info.value.__cause__ is not None
    with pytest.raises(errors.BackendUnavailable):
        runner.poll()
    with pytest.raises(errors.BackendUnavailable):
        runner.cancel("job_f")


def test_conflict_and_server_errors(api, runner):
    api.fail = (409, "AlreadyExists")
    with pytest.raises(errors.Conflict):
        runner.submit(JobSpec(job_id="job_x", kind="train"))
    api.fail = (503, "ServiceUnavailable")
    with pytest.raises(errors.BackendUnavailable) as info:
        runner.submit(JobSpec(job_id="job_x", kind="train"))
    assert info.value.__cause__ is not None


def test_unreachable_api_is_backend_unavailable(lost):
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    cfg.retries = False
    r = KubernetesJobRunner(JobTemplate(image="img"), api_client=client.ApiClient(cfg))
    with pytest.raises(errors.BackendUnavailable) as info:
        r.submit(JobSpec(job_id="job_u", kind="train"))
    assert info.value.__cause__ is not None


# -- sharded predict jobs: one Indexed Job, a failed pod loses its shard's attempt only --------------------------
def _shard_pod(api, job: dict, index: int, failures: int, status: dict) -> dict:
    pod = api.add_pod(job, status, suffix=f"{index}-{failures}")
    pod["metadata"]["annotations"].update(
        {
            "batch.kubernetes.io/job-completion-index": str(index),
            "batch.kubernetes.io/job-index-failure-count": str(failures),
        }
    )
    return pod


def test_sharded_predict_is_one_indexed_job():
    template = JobTemplate(image="img")
    body = build_job(JobSpec("job_s", "predict", attempt=1, shards=4, parallelism=2, retries=1), template)
    spec = body["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 4 and spec["parallelism"] == 2
    assert spec["backoffLimitPerIndex"] == 1 and spec["maxFailedIndexes"] == 0 and "backoffLimit" not in spec
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["kubepredict", "worker", "job_s", "--sharded"]
    failures = [e for e in container["env"] if e["name"] == "KUBEPREDICT_SHARD_FAILURES"]
    assert failures == [
        {
            "name": "KUBEPREDICT_SHARD_FAILURES",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-index-failure-count']"}
            },
        }
    ]
    assert build_job(JobSpec("job_s", "predict", shards=3), template)["spec"]["parallelism"] == 3
    with pytest.raises(errors.InvalidInput):
        build_job(JobSpec("job_s", "train", shards=2), template)


def test_worker_reads_its_shard_and_attempt_from_the_pod_env():
    from kubepredict.runner.worker import shard_from_env

    assert shard_from_env({"JOB_COMPLETION_INDEX": "3", "KUBEPREDICT_SHARD_FAILURES": "1"}) == (3, 2)
    assert shard_from_env({"JOB_COMPLETION_INDEX": "0", "KUBEPREDICT_SHARD_FAILURES": ""}) == (0, 1)
    with pytest.raises(SystemExit):
        shard_from_env({})


def test_failed_shard_pod_loses_that_shard_only_and_the_failed_job_loses_the_job(api, runner, lost):
    runner.submit(JobSpec(job_id="job_sh", kind="predict", shards=2, retries=1))
    job = api.store["jobs"][job_name("job_sh", "predict", 1)]
    _shard_pod(api, job, 0, 0, {"phase": "Running"})
    crashed = _shard_pod(
        api,
        job,
        1,
        0,
        {
            "phase": "Failed",
            "containerStatuses": [{"name": "worker", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}],
        },
    )
    api.logs[crashed["metadata"]["name"]] = "Segmentation fault\n"
    runner.poll()
    runner.poll()  # reported once
    assert [(c[0], c[1], c[2], c[4]) for c in lost] == [("job_sh", 1, "pod_failed", 1)]
    assert "Segmentation fault" in lost[0][3]
    assert runner.running() == 1  # the Job goes on: the index is retried by the Job controller
    _shard_pod(
        api,
        job,
        1,
        1,
        {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "worker", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ],
        },
    )
    job["status"] = {
        "failed": 2,
        "failedIndexes": "1",
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"}
        ],
    }
    runner.poll()
    assert [(c[0], c[1], c[2], c[4] if len(c) > 4 else None) for c in lost] == [
        ("job_sh", 1, "pod_failed", 1),
        ("job_sh", 2, "oom_killed", 1),
        ("job_sh", 1, "oom_killed", None),
    ]
    assert runner.running() == 0


def test_shard_pod_failure_through_the_pod_watch(api, runner, lost):
    runner.submit(JobSpec(job_id="job_sw", kind="predict", shards=2, retries=1))
    job = api.store["jobs"][job_name("job_sw", "predict", 1)]
    pod = json.loads(
        json.dumps(
            _shard_pod(
                api,
                job,
                0,
                0,
                {
                    "phase": "Failed",
                    "containerStatuses": [
                        {
                            "name": "worker",
                            "image": "img",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
                        }
                    ],
                },
            )
        )
    )
    api.watch_events["pods"] = [{"type": "MODIFIED", "object": pod}]
    runner.watch_once("pods", timeout_seconds=2)
    assert [(c[0], c[1], c[2], c[4]) for c in lost] == [("job_sw", 1, "pod_failed", 0)]
    assert runner.running() == 1
