"""The Job runner, the RBAC Role and the manifests against a real kube-apiserver + etcd.

What a fake API cannot show and this does: server-side validation (``fieldValidation=Strict``,
PodSecurity ``restricted`` on the worker pods, CRD schemas), defaulting (Job selector and
controller-uid labels), watch semantics, and RBAC — the runner talks to the server as the
ServiceAccount ``kubepredict/kubepredict-runner`` (a static token for that user name in the
service-account groups), so the Role in infra/base/rbac.yaml is proven sufficient (no 403 in the
audit log, every flow works) and exact (the server's effective rules for the account are
``REQUIRED_PERMISSIONS``, nothing more; everything else is forbidden).

There is no controller manager, scheduler or kubelet: ``NodeStandIn`` plays them with an admin
token. It creates each Job's Pod from the template as the Job controller would (labels, owner
reference), binds it to a Node whose kubelet endpoint is a small HTTPS server here (so the runner's
``pods/log`` read goes through the real API server proxy path), runs the container's command locally
— the real ``kubepredict worker`` against the test's SQLite catalogue, whose URL reaches the worker the
way it does in a pod: from the Secret the stand-in projects into the mount path — and writes Pod and
Job status through the status subresources (the server validates those writes too).

Needs the binaries from scripts/kube-apiserver.sh (built on first use; skipped without Go, a failure
under CI=true).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

pytest.importorskip("kubernetes")

from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runner.base import JobSpec
from kubepredict.runner.dispatcher import Dispatcher
from kubepredict.runner.k8s_manifest import RUNNER_SELECTOR
from kubepredict.runner.k8s_status import owner_key
from kubepredict.runner.kubernetes import REQUIRED_PERMISSIONS, KubernetesJobRunner
from kubepredict.services.datasets import upload_dataset
from kubepredict.services.prediction import submit_predict
from kubepredict.services.training import submit_train
from tests.services import REPO_ROOT, ServiceStartError, ServiceUnavailable, in_ci
from tests.services.kube_apiserver import KubeAPIServer, binaries_built

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from render_manifests import load_kustomization

NS = "kubepredict"
RUNNER_USER = "system:serviceaccount:kubepredict:kubepredict-runner"
NODE = "kp-test-node"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURES_KEY = "batch.kubernetes.io/job-index-failure-count"
FIELD_MANAGER = "kubepredict-tests"
#: infra/ objects created for real; everything else in infra/ is applied with dryRun=All
APPLIED_KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"}
#: a cold build of kube-apiserver happens inside the first test's setup: give that run the time it needs
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600 if binaries_built() else 3600)]


# -- the server ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kube(request) -> KubeAPIServer:
    """One kube-apiserver + etcd per session (built into ~/.cache/kubepredict/kube on first use)."""
    server = KubeAPIServer()
    request.addfinalizer(server.stop)
    problem = failure = None
    # pytest captures fd 2: let the build's progress (minutes when cold) and the timings reach the terminal
    capman = request.config.pluginmanager.getplugin("capturemanager")
    try:
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            server.start()
            print(
                f"\n[kube-apiserver] {server.env.get('KUBE_VERSION')} + etcd {server.env.get('ETCD_VERSION')} "
                f"ready in {server.ready_seconds:.1f} s at {server.server}",
                file=sys.stderr,
                flush=True,
            )
    except ServiceUnavailable as why:
        problem = f"kube-apiserver unavailable: {why}"
    except ServiceStartError as err:
        failure = str(err)
    if problem:
        if in_ci():
            pytest.fail(f"{problem} (CI=true: the real API server is required)", pytrace=False)
        pytest.skip(problem)
    if failure:
        pytest.fail(failure, pytrace=False)
    return server


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Applier:
    """Server-side apply with strict field validation; collects the server's ``Warning`` headers."""

    def __init__(self, api_client):
        self.api = api_client
        self.dyn = dynamic.DynamicClient(api_client)
        self.warnings: list[tuple[str, str]] = []

    def _resource(self, obj: dict, wait: float = 30.0):
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            except ResourceNotFoundError:
                if time.monotonic() > deadline:
                    raise
                self.dyn.resources.invalidate_cache()
                time.sleep(0.3)

    def apply(self, obj: dict, *, dry_run: bool = False) -> dict:
        res = self._resource(obj)
        meta = obj["metadata"]
        path = res.path(name=meta["name"], namespace=meta.get("namespace") if res.namespaced else None)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true"), ("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        resp = self.api.call_api(
            path,
            "PATCH",
            query_params=query,
            body=obj,
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        warning = resp.headers.get("Warning")
        if warning:
            self.warnings.append((f"{obj['kind']}/{meta['name']}", warning))
        return json.loads(resp.data)


def _api_error(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc)
    except (TypeError, ValueError):
        return str(exc)


# -- infra/ on the server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(kube, tmp_path_factory):
    """infra/ applied (namespace, ServiceAccount, Role, RoleBinding, ConfigMap, Secrets) and dry-run (the rest)."""
    data_dir = tmp_path_factory.mktemp("kube-catalogue")
    settings = Settings(data_dir=data_dir)
    admin = kube.api_client("admin")
    applier = Applier(admin)
    objects = load_kustomization(REPO_ROOT / "infra")
    applied, dry_run, rejected = [], [], []
    for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
        real = obj["kind"] in APPLIED_KINDS
        try:
            applier.apply(obj, dry_run=not real)
            (applied if real else dry_run).append(f"{obj['kind']}/{obj['metadata']['name']}")
        except ApiException as exc:
            rejected.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.status} {_api_error(exc)}")
    # Secrets from the template, every REPLACE_ME filled in; the database URL is the test's SQLite
    # catalogue, which the stand-in kubelet projects into the worker like the kubelet would.
    secret_docs = [d for d in yaml.safe_load_all((REPO_ROOT / "infra/secrets/secrets.example.yaml").read_text()) if d]
    for doc in secret_docs:
        data = doc.get("stringData") or {}
        for key, value in data.items():
            data[key] = value.replace("REPLACE_ME", uuid.uuid4().hex) if "REPLACE_ME" in value else value
        if doc["metadata"]["name"] == "kubepredict-database-url":
            data["kubepredict-database-url"] = settings.database_url
        try:
            applier.apply(doc)
            applied.append(f"Secret/{doc['metadata']['name']}")
        except ApiException as exc:
            rejected.append(f"Secret/{doc['metadata']['name']}: {exc.status} {_api_error(exc)}")
    # What the ServiceAccount admission plugin needs for pods and kube-controller-manager would create.
    with contextlib.suppress(ApiException):
        client.CoreV1Api(admin).create_namespaced_service_account(NS, {"metadata": {"name": "default"}})
    return {
        "settings": settings,
        "applied": applied,
        "dry_run": dry_run,
        "rejected": rejected,
        "warnings": list(applier.warnings),
        "objects": objects,
        "admin": admin,
    }


def test_infra_is_accepted_by_the_real_server(cluster):
    assert not cluster["rejected"], "the API server rejected infra/ objects:\n" + "\n".join(cluster["rejected"])
    assert not cluster["warnings"], "the API server warned about infra/ objects:\n" + "\n".join(
        f"{what}: {w}" for what, w in cluster["warnings"]
    )
    for name in (
        "Namespace/kubepredict",
        "ServiceAccount/kubepredict-runner",
        "Role/kubepredict-runner",
        "RoleBinding/kubepredict-runner",
        "ConfigMap/kubepredict-config",
        "Secret/kubepredict-database-url",
    ):
        assert name in cluster["applied"]
    assert cluster["dry_run"], "nothing besides the RBAC/config objects was validated"
    # the objects really exist, and the server defaulted what the manifests left out
    core = client.CoreV1Api(cluster["admin"])
    ns = core.read_namespace(NS)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert core.read_namespaced_secret("kubepredict-s3-credentials", NS).type == "Opaque"


def test_typos_are_rejected_by_strict_server_side_validation(cluster):
    applier = Applier(cluster["admin"])
    role = copy.deepcopy(next(o for o in cluster["objects"] if o["kind"] == "Role"))
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(ApiException) as info:
        applier.apply(role, dry_run=True)
    # server-side apply answers an undeclared field with 500 "failed to create typed patch object
    # ... .rules[0].verb: field not declared in schema" (1.34); create/update would say 400 with Strict
    assert info.value.status in (400, 422, 500) and ".rules[0].verb: field not declared" in _api_error(info.value)
    cm = copy.deepcopy(next(o for o in cluster["objects"] if o["kind"] == "ConfigMap"))
    cm["data"]["BAD KEY"] = "x"
    with pytest.raises(ApiException) as info:
        applier.apply(cm, dry_run=True)
    assert info.value.status == 422


# -- the stand-in for the Job controller, scheduler and kubelet ------------------------------------
class _KubeletLogs(ThreadingHTTPServer):
    """The kubelet's /containerLogs endpoint, enough for the API server's pods/log proxy."""

    def __init__(self, cert: str, key: str, logs: dict[str, Path]):
        self.logs = logs
        super().__init__(("127.0.0.1", 0), _KubeletHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)


class _KubeletHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # http.server's naming
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")  # containerLogs/<ns>/<pod>/<container>
        path = self.server.logs.get(parts[2]) if len(parts) == 4 and parts[0] == "containerLogs" else None
        if path is None or not path.exists():
            self.send_response(404)
            self.end_headers()
            return
        lines = path.read_text(errors="replace").splitlines()
        tail = parse_qs(url.query).get("tailLines")
        if tail:
            lines = lines[-int(tail[0]) :]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class NodeStandIn:
    """Job controller + scheduler + kubelet + garbage collector, acting with the admin identity.

    ``behaviour[job_id]``: "run" (the pod's own command, i.e. the real worker), "crash" (a stand-in that
    logs and exits 2), "oom" (the container is OOMKilled), "hang" (a stand-in that runs until stopped).
    An Indexed Job (a sharded predict job) gets one pod per index, run one after the other; its
    ``behaviour[job_id]`` is ``{index: [behaviour of the 1st pod, of the 2nd, ...]}`` ("run" past the list),
    and a failed pod is replaced for its index alone until ``backoffLimitPerIndex``, as the Job controller does.
    """

    def __init__(self, kube: KubeAPIServer, workdir: Path, local_env: dict[str, str]):
        self.admin = kube.api_client("admin")
        self.batch, self.core = client.BatchV1Api(self.admin), client.CoreV1Api(self.admin)
        self.workdir, self.local_env = workdir, local_env
        self.behaviour: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen] = {}  # pod name -> process
        self.pod_of_job: dict[str, str] = {}  # Job uid -> pod name
        self.logs: dict[str, Path] = {}
        state = Path(kube.env["KUBE_STATE_DIR"])
        self.kubelet = _KubeletLogs(str(state / "apiserver.crt"), str(state / "apiserver.key"), self.logs)
        threading.Thread(target=self.kubelet.serve_forever, daemon=True, name="kubelet-logs").start()
        self._register_node()

    def _register_node(self) -> None:
        with contextlib.suppress(ApiException):
            self.core.create_node({"metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}})
        self.core.patch_node_status(
            NODE,
            {
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": "127.0.0.1"},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet.server_address[1]}},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "stand-in",
                            "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now(),
                        }
                    ],
                }
            },
        )

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.kubelet.shutdown()
        self.kubelet.server_close()

    # Job controller ------------------------------------------------------------------------------
    def sync(self) -> list[str]:
        """Give every Job without a pod its pod and run it per its behaviour; return the pod names started."""
        started = []
        for listed in self.batch.list_namespaced_job(NS).items:
            uid = listed.metadata.uid
            if uid in self.pod_of_job or listed.status.conditions:
                continue
            job = self.admin.sanitize_for_serialization(listed)
            if job["spec"].get("completionMode") == "Indexed":
                started += self._run_indexed(job)
            else:
                started.append(self._start_pod(job))
        return started

    def _run_indexed(self, job: dict) -> list[str]:
        """Job controller for an Indexed Job: each index until it succeeds or runs out of per-index retries."""
        spec, name = job["spec"], job["metadata"]["name"]
        plan = self.behaviour.get(owner_key(job)[0]) or {}
        pods, done, failed = [], [], []
        for index in range(spec["completions"]):
            for failures in range(spec.get("backoffLimitPerIndex", 0) + 1):
                steps = plan.get(index) or []
                pod = self._start_pod(
                    job, index=(index, failures), behaviour=steps[failures] if failures < len(steps) else "run"
                )
                pods.append(pod)
                if self.procs[pod].returncode == 0:
                    done.append(index)
                    break
            else:
                failed.append(index)
                break  # maxFailedIndexes 0: the first failed index fails the Job
        indexes = ",".join(map(str, done))
        if failed:
            cond = {
                "status": "True",
                "reason": "FailedIndexes",
                "message": "Job has failed indexes",
                "lastProbeTime": _now(),
                "lastTransitionTime": _now(),
            }
            self.batch.patch_namespaced_job_status(
                name,
                NS,
                {
                    "status": {
                        "active": 0,
                        "ready": 0,
                        "succeeded": len(done),
                        "failed": len(pods) - len(done),
                        "completedIndexes": indexes,
                        "failedIndexes": ",".join(map(str, failed)),
                        "conditions": [dict(cond, type="FailureTarget")],
                    }
                },
            )
            self.batch.patch_namespaced_job_status(name, NS, {"status": {"conditions": [dict(cond, type="Failed")]}})
            return pods
        cond = {
            "status": "True",
            "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods",
            "lastProbeTime": _now(),
            "lastTransitionTime": _now(),
        }
        self.batch.patch_namespaced_job_status(
            name,
            NS,
            {
                "status": {
                    "active": 0,
                    "ready": 0,
                    "succeeded": len(done),
                    "failed": len(pods) - len(done),
                    "completedIndexes": f"0-{len(done) - 1}" if len(done) > 1 else indexes,
                    "conditions": [dict(cond, type="SuccessCriteriaMet")],
                }
            },
        )
        self.batch.patch_namespaced_job_status(
            name, NS, {"status": {"completionTime": _now(), "conditions": [dict(cond, type="Complete")]}}
        )
        return pods

    def _start_pod(self, job: dict, index: tuple[int, int] | None = None, behaviour: str | None = None) -> str:
        meta, template = job["metadata"], job["spec"]["template"]
        name = f"{meta['name']}-{uuid.uuid4().hex[:5]}"
        labels = dict(template["metadata"].get("labels") or {})
        annotations = dict(template["metadata"].get("annotations") or {})
        pod_spec = copy.deepcopy(template["spec"])
        if index is not None:  # what the Job controller adds to an Indexed Job's pods
            name = f"{meta['name']}-{index[0]}-{uuid.uuid4().hex[:5]}"
            labels[INDEX_KEY] = str(index[0])
            annotations.update({INDEX_KEY: str(index[0]), INDEX_FAILURES_KEY: str(index[1])})
            for c in pod_spec["containers"]:
                c.setdefault("env", []).append(
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}},
                    }
                )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }
        self.core.create_namespaced_pod(NS, pod)  # PodSecurity "restricted" is enforced on this create
        self.pod_of_job[meta["uid"]] = name
        started = {"startTime": _now()} if index in (None, (0, 0)) else {}  # set once: the server refuses a change
        self.batch.patch_namespaced_job_status(meta["name"], NS, {"status": {**started, "active": 1}})
        # scheduler: bind to the node
        self.core.create_namespaced_pod_binding(
            name,
            NS,
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
            },
            _preload_content=False,
        )
        job_id = owner_key(job)[0]
        behaviour = behaviour or self.behaviour.get(job_id, "run")
        container = pod_spec["containers"][0]
        if behaviour == "oom":
            self._pod_running(name, container)
            self._finish(job, name, container, exit_code=137, reason="OOMKilled")
            return name
        argv = self._argv(behaviour, container)
        log_path = self.workdir / f"{name}.log"
        self.logs[name] = log_path
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                env=self._env(pod_spec, container, annotations),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.procs[name] = proc
        self._pod_running(name, container)
        if behaviour != "hang":
            code = proc.wait(timeout=300)
            self._finish(
                job,
                name,
                container,
                exit_code=code,
                reason="Completed" if code == 0 else "Error",
                job_status=index is None,
            )
        return name

    # kubelet ---------------------------------------------------------------------------------------
    def _argv(self, behaviour: str, container: dict) -> list[str]:
        if behaviour == "run":
            argv = list(container["command"]) + list(container.get("args") or [])
            exe = Path(sys.executable).parent / argv[0]
            return [str(exe) if exe.exists() else argv[0]] + argv[1:]
        if behaviour == "crash":
            return [
                "sh",
                "-c",
                ("echo 'worker: loading dataset'; echo 'worker: Segmentation fault (stand-in)' >&2; exit 2"),
            ]
        if behaviour == "hang":
            return ["sleep", "600"]
        raise ValueError(behaviour)

    def _env(self, pod_spec: dict, container: dict, annotations: dict | None = None) -> dict[str, str]:
        """The container's environment as the kubelet builds it, then node-local overrides (see module doc)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            if ref:
                env.update(self.core.read_namespaced_config_map(ref["name"], NS).data or {})
        mounts = self._project_secrets(pod_spec, container)
        for item in container.get("env") or []:
            path = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
            if path.startswith("metadata.annotations['"):  # downward API: a missing annotation is ""
                env[item["name"]] = (annotations or {}).get(path[len("metadata.annotations['") : -2], "")
                continue
            env[item["name"]] = mounts.get(item.get("value"), item.get("value", ""))
        env.update(self.local_env)
        return env

    def _project_secrets(self, pod_spec: dict, container: dict) -> dict[str, str]:
        """Write the projected Secret volumes to local folders; return mountPath -> local folder."""
        mount_paths = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
        mapping = {}
        for volume in pod_spec.get("volumes") or []:
            sources = (volume.get("projected") or {}).get("sources") or []
            if not sources or volume["name"] not in mount_paths:
                continue
            local = self.workdir / f"vol-{uuid.uuid4().hex[:6]}"
            local.mkdir()
            for src in sources:
                ref = src.get("secret")
                if not ref:
                    continue
                try:
                    secret = self.core.read_namespaced_secret(ref["name"], NS)
                except ApiException as exc:
                    if exc.status == 404 and ref.get("optional"):
                        continue
                    raise
                for key, value in (secret.data or {}).items():
                    (local / key).write_bytes(base64.b64decode(value))
            mapping[mount_paths[volume["name"]]] = str(local)
        return mapping

    def _pod_running(self, name: str, container: dict) -> None:
        self.core.patch_namespaced_pod_status(
            name,
            NS,
            {
                "status": {
                    "phase": "Running",
                    "hostIP": "127.0.0.1",
                    "podIP": "10.244.0.10",
                    "startTime": _now(),
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}],
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": _now()}},
                        }
                    ],
                }
            },
        )

    def _finish(
        self, job: dict, pod: str, container: dict, *, exit_code: int, reason: str, job_status: bool = True
    ) -> None:
        """kubelet: the container's terminal state; then the Job controller's conditions for it."""
        ok = exit_code == 0
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": _now(), "finishedAt": _now()}
        if not ok and pod in self.logs:  # terminationMessagePolicy FallbackToLogsOnError
            terminated["message"] = "\n".join(self.logs[pod].read_text(errors="replace").splitlines()[-5:])
        self.core.patch_namespaced_pod_status(
            pod,
            NS,
            {
                "status": {
                    "phase": "Succeeded" if ok else "Failed",
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "PodCompleted" if ok else "PodFailed",
                            "lastTransitionTime": _now(),
                        }
                    ],
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": False,
                            "started": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                }
            },
        )
        name = job["metadata"]["name"]
        if not job_status:  # an Indexed Job's pod: _run_indexed writes the Job's status once all indexes ran
            return
        if ok:  # the Job controller's order: SuccessCriteriaMet, then Complete with completionTime
            self.batch.patch_namespaced_job_status(
                name,
                NS,
                {
                    "status": {
                        "active": 0,
                        "ready": 0,
                        "succeeded": 1,
                        "conditions": [
                            {
                                "type": "SuccessCriteriaMet",
                                "status": "True",
                                "reason": "CompletionsReached",
                                "message": "Reached expected number of succeeded pods",
                                "lastProbeTime": _now(),
                                "lastTransitionTime": _now(),
                            }
                        ],
                    }
                },
            )
            self.batch.patch_namespaced_job_status(
                name,
                NS,
                {
                    "status": {
                        "completionTime": _now(),
                        "conditions": [
                            {
                                "type": "Complete",
                                "status": "True",
                                "reason": "CompletionsReached",
                                "message": "Reached expected number of succeeded pods",
                                "lastProbeTime": _now(),
                                "lastTransitionTime": _now(),
                            }
                        ],
                    }
                },
            )
        else:  # FailureTarget first, then Failed once the pod is terminal
            cond = {
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastProbeTime": _now(),
                "lastTransitionTime": _now(),
            }
            self.batch.patch_namespaced_job_status(
                name,
                NS,
                {"status": {"active": 0, "ready": 0, "failed": 1, "conditions": [dict(cond, type="FailureTarget")]}},
            )
            self.batch.patch_namespaced_job_status(name, NS, {"status": {"conditions": [dict(cond, type="Failed")]}})

    # garbage collector + kubelet ------------------------------------------------------------------------
    def collect_garbage(self) -> list[str]:
        """Delete pods whose owning Job is gone (and stop their processes); return their names."""
        live = {j.metadata.uid for j in self.batch.list_namespaced_job(NS).items}
        removed = []
        for pod in self.core.list_namespaced_pod(NS).items:
            owners = [o.uid for o in pod.metadata.owner_references or [] if o.kind == "Job"]
            if owners and not set(owners) & live:
                self.core.delete_namespaced_pod(pod.metadata.name, NS, grace_period_seconds=0)
                proc = self.procs.get(pod.metadata.name)
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
                removed.append(pod.metadata.name)
        return removed


# -- the runner, as the ServiceAccount, through every flow ------------------------------------------
def _wait(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _csv(rows: int = 80) -> bytes:
    lines = ["x1,x2,colour,label"]
    for i in range(rows):
        x1, x2 = (i * 7) % 13 / 3.0, (i * 5) % 11 / 2.0
        lines.append(f"{x1:.3f},{x2:.3f},{('red', 'green', 'blue')[i % 3]},{'yes' if x1 + x2 > 4.5 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def flows(kube, cluster, tmp_path_factory):
    """Run train, predict, OOMKilled, crash, cancel and re-submit once; each test asserts one of them.

    The runner (KubernetesJobRunner with the ServiceAccount's token) is driven by the real Dispatcher
    over a real SQLite catalogue; its watch threads detect what the stand-in node writes.
    """
    import dataclasses

    settings = cluster["settings"]
    svc = bootstrap(settings)
    core_admin = client.CoreV1Api(cluster["admin"])
    image = core_admin.read_namespaced_config_map("kubepredict-config", NS).data["KUBEPREDICT_JOB_IMAGE"]
    runner_settings = dataclasses.replace(settings, runner="kubernetes", namespace=NS, job_image=image)
    runner = KubernetesJobRunner.from_settings(runner_settings, api_client=kube.api_client("runner"))
    dispatcher = Dispatcher(svc.catalog, runner, settings)
    lost: list[tuple] = []
    reported = runner.on_lost
    runner.on_lost = lambda *args: (reported(*args), lost.append(args))  # recorded once the catalogue has it
    workdir = tmp_path_factory.mktemp("node")
    node = NodeStandIn(
        kube,
        workdir,
        {
            # node-local: the ConfigMap's in-cluster MinIO/Kafka hosts do not resolve here; the database URL
            # is NOT overridden (the worker reads it from the projected Secret, as in a pod)
            "KUBEPREDICT_STORAGE_URL": settings.storage_url,
            "KUBEPREDICT_DATA_DIR": str(settings.data_dir),
            "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS": "",
            "KUBEPREDICT_HEARTBEAT_SECONDS": "0.5",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
        },
    )
    runner.start()
    results: dict[str, object] = {"runner": runner, "node": node, "lost": lost, "catalog": svc.catalog}
    batch_admin = client.BatchV1Api(cluster["admin"])

    def job_status(job_id):
        return svc.catalog.get_job(job_id)["status"]

    def lost_for(job_id):
        return [entry for entry in lost if entry[0] == job_id]

    def queue_and_dispatch(submit, body, behaviour="run"):
        job, _created = submit(svc, body)
        node.behaviour[job["job_id"]] = behaviour
        assert dispatcher.tick() == 1, "the dispatcher did not hand the job to the runner"
        name = runner._inflight[(job["job_id"], 1)]
        return job["job_id"], name

    def step(name):
        def wrap(fn):
            try:
                results[name] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised by the test that owns this flow
                results[name] = exc
            return fn

        return wrap

    dataset = upload_dataset(svc, io.BytesIO(_csv()), name="kube-it")

    @step("train")
    def _train():
        job_id, name = queue_and_dispatch(submit_train, {"dataset_id": dataset["dataset_id"], "target": "label"})
        created = batch_admin.read_namespaced_job(name, NS)
        # the dispatcher may call submit() again for the same attempt (a retry): the runner must not fail
        runner.submit(JobSpec(job_id=job_id, kind="train", attempt=1))
        pods = node.sync()
        _wait(lambda: job_status(job_id) in ("succeeded", "failed"), 120, f"train job {job_id} to finish")
        _wait(lambda: runner.running() == 0, 30, "the runner to see the Job complete")
        pod = core_admin.read_namespaced_pod(pods[0], NS)
        return {
            "job_id": job_id,
            "job": svc.catalog.get_job(job_id),
            "k8s_job": created,
            "pod": pod,
            "log": node.logs[pods[0]].read_text(errors="replace"),
        }

    @step("predict")
    def _predict():
        train = results["train"]
        if isinstance(train, BaseException):
            raise AssertionError("train flow failed first") from train
        job_id, name = queue_and_dispatch(
            submit_predict, {"model_id": train["job"]["model_id"], "dataset_id": dataset["dataset_id"]}
        )
        node.sync()
        _wait(lambda: job_status(job_id) in ("succeeded", "failed"), 120, f"predict job {job_id} to finish")
        _wait(lambda: runner.running() == 0, 30, "the runner to see the Job complete")
        return {"job_id": job_id, "job": svc.catalog.get_job(job_id)}

    def failing_train(behaviour: str, what: str) -> dict:
        """A train job whose pod fails as ``behaviour`` says; returns what the runner reported."""
        job_id, _name = queue_and_dispatch(
            submit_train, {"dataset_id": dataset["dataset_id"], "target": "label"}, behaviour=behaviour
        )
        node.sync()
        _wait(lambda: lost_for(job_id), 30, f"the runner to report the {what}")
        out = {"job_id": job_id, "lost": lost_for(job_id), "job": svc.catalog.get_job(job_id)}
        svc.catalog.cancel(job_id)  # requeued (attempt 1 of 2): keep it from being claimed by later flows
        return out

    @step("oom")
    def _oom():
        return failing_train("oom", "OOMKilled pod")

    @step("crash")
    def _crash():
        return failing_train("crash", "failed pod")

    @step("cancel")
    def _cancel():
        job_id, name = queue_and_dispatch(
            submit_train, {"dataset_id": dataset["dataset_id"], "target": "label"}, behaviour="hang"
        )
        pods = node.sync()
        proc = node.procs[pods[0]]
        running_before = runner.running()
        svc.catalog.cancel(job_id)  # the user's cancel; the dispatcher's next round has the runner delete the Job
        dispatcher.tick()
        with pytest.raises(ApiException) as gone:
            batch_admin.read_namespaced_job(name, NS)
        removed = node.collect_garbage()
        runner.poll()  # a cancelled Job is not "lost"
        return {
            "job_id": job_id,
            "running_before": running_before,
            "running_after": runner.running(),
            "read_status": gone.value.status,
            "removed": removed,
            "pod": pods[0],
            "exit": proc.poll(),
            "lost": lost_for(job_id),
            "job": svc.catalog.get_job(job_id),
        }

    def sharded_predict(plan: dict, what: str) -> dict:
        """A 3-shard predict job as one Indexed Job; ``plan`` says which shard pods the node fails."""
        train = results["train"]
        if isinstance(train, BaseException):
            raise AssertionError("train flow failed first") from train
        job_id, name = queue_and_dispatch(
            submit_predict,
            {"model_id": train["job"]["model_id"], "dataset_id": dataset["dataset_id"], "shards": 3},
            behaviour=plan,
        )
        created = batch_admin.read_namespaced_job(name, NS)  # as the server accepted and defaulted it
        pods = node.sync()
        _wait(lambda: job_status(job_id) in ("succeeded", "failed"), 180, f"{what} {job_id} to finish")
        dispatcher.tick()  # a failed job's Indexed Job is deleted by the next round
        _wait(lambda: runner.running() == 0, 30, "the runner to see the Indexed Job finish")
        return {
            "job_id": job_id,
            "job": svc.catalog.get_job(job_id),
            "k8s_job": created,
            "pods": pods,
            "lost": lost_for(job_id),
            "log": {p: node.logs[p].read_text(errors="replace") for p in pods},
            "predictions": [tuple(r) for r in svc.catalog.page_predictions(job_id, offset=0, limit=1000)],
        }

    @step("sharded")
    def _sharded():
        return sharded_predict({1: ["crash"]}, "sharded predict job")  # shard 1's first pod crashes: retried alone

    @step("sharded_exhausted")
    def _sharded_exhausted():
        return sharded_predict({2: ["crash", "crash"]}, "sharded predict job out of retries")

    yield results
    runner.close()
    node.close()


def _outcome(flows, name):
    value = flows[name]
    if isinstance(value, BaseException):
        raise value
    return value


def test_train_job_runs_the_real_worker_to_completion(flows):
    out = _outcome(flows, "train")
    assert out["job"]["status"] == "succeeded", (out["job"], out["log"][-2000:])
    assert out["job"]["metrics"], out["job"]
    assert flows["catalog"].get_model(out["job"]["model_id"])["status"] == "ready"
    pod = out["pod"]
    assert pod.status.phase == "Succeeded" and pod.spec.node_name == NODE
    assert pod.spec.containers[0].command[:2] == ["kubepredict", "worker"]


def test_server_defaults_the_job_and_its_pods_stay_selectable(flows):
    out = _outcome(flows, "train")
    job = out["k8s_job"]
    uid = job.metadata.uid
    # server-side defaulting the fake API never did: the selector and the labels the Job controller uses
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    template_labels = job.spec.template.metadata.labels
    assert template_labels["batch.kubernetes.io/job-name"] == job.metadata.name
    assert job.spec.completion_mode == "NonIndexed" and job.spec.backoff_limit == 0
    assert owner_key({"metadata": {"labels": job.metadata.labels, "annotations": job.metadata.annotations}}) == (
        out["job_id"],
        1,
    )
    # the pod made from the template carries the runner's selector labels and annotation
    pod_labels = out["pod"].metadata.labels
    for term in RUNNER_SELECTOR.split(","):
        key, _, value = term.partition("=")
        assert key in pod_labels and (not value or pod_labels[key] == value)
    assert owner_key({"metadata": {"labels": pod_labels, "annotations": out["pod"].metadata.annotations}}) == (
        out["job_id"],
        1,
    )


def test_predict_job_runs_the_real_worker_to_completion(flows):
    out = _outcome(flows, "predict")
    assert out["job"]["status"] == "succeeded", out["job"]
    assert out["job"]["summary"], out["job"]


def test_oomkilled_pod_is_reported_and_the_job_requeued(flows):
    out = _outcome(flows, "oom")
    ((job_id, attempt, code, message),) = out["lost"]
    assert (job_id, attempt, code) == (out["job_id"], 1, "oom_killed")
    assert "OOMKilled" in message and "137" in message
    assert out["job"]["status"] == "queued" and out["job"]["error"]["code"] == "oom_killed", out["job"]


def test_failed_pod_is_reported_with_its_log_tail_through_the_api_server(flows):
    out = _outcome(flows, "crash")
    ((job_id, attempt, code, message),) = out["lost"]
    assert (job_id, attempt, code) == (out["job_id"], 1, "pod_failed")
    assert "exit code 2" in message
    # read as the ServiceAccount via pods/log: API server -> stand-in kubelet /containerLogs
    head, sep, tail = message.partition("\n--- last log lines ---\n")
    assert sep, message
    assert tail.splitlines() == ["worker: loading dataset", "worker: Segmentation fault (stand-in)"], message


def test_sharded_predict_is_one_indexed_job_accepted_by_the_server(flows):
    out = _outcome(flows, "sharded")
    spec = out["k8s_job"].spec
    assert (spec.completion_mode, spec.completions, spec.parallelism) == ("Indexed", 3, 3)
    assert spec.backoff_limit_per_index == 1 and spec.max_failed_indexes == 0
    container = spec.template.spec.containers[0]
    assert container.command == ["kubepredict", "worker", out["job_id"], "--sharded"]
    # every shard pod passed PodSecurity "restricted" and the downward-API env on the real server
    assert len(out["pods"]) == 4


def test_failed_shard_pod_is_retried_alone_and_the_job_succeeds(flows):
    out = _outcome(flows, "sharded")
    job = out["job"]
    assert job["status"] == "succeeded", (job, out["log"])
    assert [(s["status"], s["attempt"]) for s in job["shard_status"]] == [
        ("succeeded", 1),
        ("succeeded", 2),
        ("succeeded", 1),
    ]
    assert [(entry[0], entry[1], entry[2], entry[4]) for entry in out["lost"]] == [
        (out["job_id"], 1, "pod_failed", 1)
    ]  # the crashed pod: index 1, its first attempt
    whole = _outcome(flows, "predict")["job_id"]
    expected = [tuple(r) for r in flows["catalog"].page_predictions(whole, offset=0, limit=1000)]
    assert out["predictions"] == expected and len(expected) == 80  # same rows, same order, none twice
    assert job["summary"]["class_counts"] == _outcome(flows, "predict")["job"]["summary"]["class_counts"]


def test_shard_out_of_retries_fails_the_job_through_the_job_status(flows):
    out = _outcome(flows, "sharded_exhausted")
    job = out["job"]
    assert job["status"] == "failed", job
    assert [s["status"] for s in job["shard_status"]] == ["succeeded", "succeeded", "cancelled"]
    codes = [(entry[2], entry[4] if len(entry) > 4 else None) for entry in out["lost"]]
    assert codes == [("pod_failed", 2), ("pod_failed", 2), ("pod_failed", None)], out["lost"]
    assert job["error"]["code"] == "pod_failed"
    # what drove it: the Job status the (stand-in) Job controller wrote, kept until its TTL like any failed Job
    k8s_job = client.BatchV1Api(flows["node"].admin).read_namespaced_job(out["k8s_job"].metadata.name, NS)
    assert k8s_job.status.failed_indexes == "2" and k8s_job.status.completed_indexes == "0,1"
    assert any(c.type == "Failed" and c.reason == "FailedIndexes" for c in k8s_job.status.conditions)


def test_cancel_deletes_the_running_job(flows):
    out = _outcome(flows, "cancel")
    assert out["running_before"] == 1 and out["running_after"] == 0
    assert out["read_status"] == 404
    assert out["removed"] == [out["pod"]] and out["exit"] is not None
    assert out["lost"] == [] and out["job"]["status"] == "cancelled"


# -- RBAC: the Role is sufficient and exact ---------------------------------------------------------
PROBE_AGENT = "kubepredict-rbac-probe"
#: (namespace, group, resource, verb) the runner must NOT be able to do
FORBIDDEN = [
    (NS, "", "pods", "delete"),
    (NS, "", "pods", "create"),
    (NS, "", "pods", "get"),
    (NS, "", "pods", "patch"),
    (NS, "", "pods/exec", "create"),
    (NS, "", "pods/status", "update"),
    (NS, "", "secrets", "get"),
    (NS, "", "secrets", "list"),
    (NS, "", "secrets", "create"),
    (NS, "", "configmaps", "get"),
    (NS, "", "serviceaccounts/token", "create"),
    (NS, "batch", "jobs", "update"),
    (NS, "batch", "jobs", "patch"),
    (NS, "batch", "jobs/status", "update"),
    (NS, "batch", "cronjobs", "create"),
    (NS, "apps", "deployments", "create"),
    (NS, "rbac.authorization.k8s.io", "roles", "create"),
    (NS, "rbac.authorization.k8s.io", "rolebindings", "create"),
    ("default", "batch", "jobs", "create"),
    ("default", "", "pods", "list"),
    ("", "", "namespaces", "list"),
    ("", "", "nodes", "get"),
]


def _probe_client(kube, who: str = "runner"):
    api = kube.api_client(who)
    api.user_agent = PROBE_AGENT  # the audit test leaves these deliberate probes out
    return api


def _triples(rules) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules or []:
        if rule.resource_names:  # name-restricted rules are not what the runner needs; keep them visible
            out |= {
                (g, f"{r}[{','.join(rule.resource_names)}]", v)
                for g in rule.api_groups
                for r in rule.resources
                for v in rule.verbs
            }
            continue
        out |= {(g, r, v) for g in rule.api_groups or [] for r in rule.resources or [] for v in rule.verbs}
    return out


def test_role_grants_exactly_what_the_runner_declares(kube, cluster):
    """The server's effective rules for the ServiceAccount in kubepredict, minus any user's, == REQUIRED_PERMISSIONS."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": NS}}
    mine = client.AuthorizationV1Api(_probe_client(kube)).create_self_subject_rules_review(body).status
    anyone = client.AuthorizationV1Api(_probe_client(kube, "nobody")).create_self_subject_rules_review(body).status
    granted = _triples(mine.resource_rules) - _triples(anyone.resource_rules)
    missing, extra = set(REQUIRED_PERMISSIONS) - granted, granted - set(REQUIRED_PERMISSIONS)
    assert not missing and not extra, (
        f"infra/base/rbac.yaml grants the runner {sorted(granted)}; "
        f"missing {sorted(missing)}, beyond REQUIRED_PERMISSIONS {sorted(extra)}"
    )


def test_runner_is_allowed_what_it_needs_and_forbidden_the_rest(kube, cluster):
    authz = client.AuthorizationV1Api(_probe_client(kube))

    def allowed(namespace, group, resource, verb) -> bool:
        res, _, sub = resource.partition("/")
        attrs = {"namespace": namespace or None, "group": group, "resource": res, "verb": verb}
        if sub:
            attrs["subresource"] = sub
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        return authz.create_self_subject_access_review(review).status.allowed

    denied = [p for p in REQUIRED_PERMISSIONS if not allowed(NS, *p)]
    assert not denied, f"the Role does not grant {sorted(denied)}"
    permitted = [p for p in FORBIDDEN if allowed(*p)]
    assert not permitted, f"the runner may {permitted}, which it never needs"
    # the same answer from SubjectAccessReview (asked by an admin about the ServiceAccount)
    sar = client.AuthorizationV1Api(cluster["admin"])
    for (group, resource, verb), expect in [(("", "pods", "delete"), False), (("batch", "jobs", "create"), True)]:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": RUNNER_USER,
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kubepredict", "system:authenticated"],
                "resourceAttributes": {"namespace": NS, "group": group, "resource": resource, "verb": verb},
            },
        }
        assert sar.create_subject_access_review(review).status.allowed is expect, (group, resource, verb)
    # and real requests are refused with 403
    core, batch = client.CoreV1Api(_probe_client(kube)), client.BatchV1Api(_probe_client(kube))
    for call in (
        lambda: core.delete_namespaced_pod("any-pod", NS),
        lambda: core.read_namespaced_secret("kubepredict-database-url", NS),
        lambda: core.create_namespaced_secret(NS, {"metadata": {"name": "x"}, "stringData": {"a": "b"}}),
        lambda: batch.list_namespaced_job("default"),
        lambda: batch.patch_namespaced_job_status("any-job", NS, {"status": {}}),
    ):
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status == 403, info.value


def test_runner_used_every_permission_and_was_never_forbidden(kube, flows):
    """From the audit log: what the runner really did == REQUIRED_PERMISSIONS, and no request got a 403."""
    for name in ("train", "predict", "oom", "crash", "cancel", "sharded", "sharded_exhausted"):
        _outcome(flows, name)  # every flow must have run for the comparison to mean anything
    flows["runner"].close()
    events = {}
    for event in kube.audit_events(user=RUNNER_USER):
        if event.get("userAgent", "").startswith(PROBE_AGENT) or not event.get("objectRef"):
            continue
        events[event["auditID"]] = event  # ResponseStarted + ResponseComplete of a watch: one request
    used, refused = set(), []
    for event in events.values():
        ref = event["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
        if (event.get("responseStatus") or {}).get("code") == 403:
            refused.append(f"{event['verb']} {event['requestURI']}")
    assert not refused, f"the API server refused the runner: {refused}"
    assert used == set(REQUIRED_PERMISSIONS), (
        f"used but not declared: {sorted(used - set(REQUIRED_PERMISSIONS))}; "
        f"declared but never used: {sorted(set(REQUIRED_PERMISSIONS) - used)}"
    )


# -- Kubeless CRDs and objects ---------------------------------------------------------------------
def _docs(*paths: Path) -> list[dict]:
    return [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.fixture(scope="module")
def kubeless(kube, cluster):
    applier = Applier(cluster["admin"])
    crds = _docs(*sorted((REPO_ROOT / "triggers/crds").glob("*.yaml")))
    for crd in crds:
        applier.apply(crd)
    ext = client.ApiextensionsV1Api(cluster["admin"])

    def established():
        return all(
            any(
                c.type == "Established" and c.status == "True"
                for c in ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
            )
            for crd in crds
        )

    _wait(established, 30, "the Kubeless CRDs to be established")
    return {"applier": applier, "crds": crds}


def test_kubeless_objects_pass_server_side_validation(kubeless, cluster):
    applier = kubeless["applier"]
    paths = sorted((REPO_ROOT / "triggers/functions").glob("*.yaml")) + sorted((REPO_ROOT / "triggers").glob("*.yaml"))
    objects = _docs(*paths)
    kinds = {o["kind"] for o in objects}
    assert {"Function", "HTTPTrigger", "KafkaTrigger"} <= kinds
    rejected = []
    for obj in objects:
        try:
            applier.apply(obj)
        except ApiException as exc:
            rejected.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.status} {_api_error(exc)}")
    assert not rejected, "\n".join(rejected)
    assert not applier.warnings, applier.warnings
    # nothing pruned or rewritten: what the server stored is what the manifests say
    dyn = applier.dyn
    for obj in objects:
        stored = (
            dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            .get(name=obj["metadata"]["name"], namespace=NS)
            .to_dict()
        )
        assert stored["spec"] == obj["spec"], f"{obj['kind']}/{obj['metadata']['name']} changed on the server"
    custom = client.CustomObjectsApi(cluster["admin"])
    names = {
        i["metadata"]["name"]
        for i in custom.list_namespaced_custom_object("kubeless.io", "v1beta1", NS, "functions")["items"]
    }
    assert {"train", "predict", "upload", "result"} <= names


def test_kubeless_schemas_reject_what_kubeless_would_not_read(kubeless):
    applier = kubeless["applier"]
    trigger = copy.deepcopy(_docs(REPO_ROOT / "triggers/http-triggers.yaml")[0])
    trigger["metadata"]["name"] = "typo"
    trigger["spec"]["function_name"] = trigger["spec"].pop("function-name")  # unknown field + missing required
    with pytest.raises(ApiException) as info:
        applier.apply(trigger, dry_run=True)
    assert info.value.status in (400, 422, 500) and "function_name" in _api_error(info.value)
    trigger = copy.deepcopy(_docs(REPO_ROOT / "triggers/http-triggers.yaml")[0])
    trigger["metadata"]["name"] = "bad-gateway"
    trigger["spec"]["gateway"] = "haproxy"  # not in the enum
    with pytest.raises(ApiException) as info:
        applier.apply(trigger, dry_run=True)
    assert info.value.status == 422 and "gateway" in _api_error(info.value)
    kafka = copy.deepcopy(_docs(REPO_ROOT / "triggers/kafka-triggers.yaml")[0])
    kafka["metadata"]["name"] = "typo"
    kafka["spec"]["topicz"] = kafka["spec"].get("topic", "x")
    with pytest.raises(ApiException) as info:
        applier.apply(kafka, dry_run=True)
    assert info.value.status in (400, 422, 500) and "topicz" in _api_error(info.value)


def test_packaged_kubeless_function_fits_and_round_trips(kubeless, cluster):
    """scripts/package-kubeless.sh output (inline zip) is accepted and stored unchanged (etcd's 1.5 MiB limit)."""
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/package-kubeless.sh"), "train"], check=True, capture_output=True, timeout=300
    )
    fn = _docs(REPO_ROOT / "build/kubeless/train.yaml")[0]
    fn["metadata"]["name"] = "train-packaged"
    kubeless["applier"].apply(fn)
    stored = client.CustomObjectsApi(cluster["admin"]).get_namespaced_custom_object(
        "kubeless.io", "v1beta1", NS, "functions", "train-packaged"
    )
    assert stored["spec"]["function"] == fn["spec"]["function"] and len(fn["spec"]["function"]) > 10_000
    assert stored["spec"]["checksum"] == fn["spec"]["checksum"]
