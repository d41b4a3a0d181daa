"""Our container images, built from the Dockerfiles as committed and run the way the manifests run them.

``scripts/images.sh build`` (what ``make images`` runs) builds the job image (infra/docker/job.Dockerfile)
and the four function images (template/kubepredict-python3-http/Dockerfile, ``--target server``: the
of-watchdog stage cannot be pulled here, so the function's own server answers on its port) on a locally
built Debian bookworm base, with podman and a private store under ~/.cache/kubepredict/images. A cold
build takes minutes (the base from Debian packages, the Python wheels from PyPI); warm runs reuse the
cached layers and take seconds.

Each container runs as its non-root user, with a read-only root file system, all capabilities dropped,
no privilege escalation and a tmpfs on /tmp -- what infra/base, stack.yml and runner/k8s_manifest.py
declare -- on the host's network, against the host's PostgreSQL and S3 (tests/services):

- the four function images answer HTTP: upload a CSV, train, read the job, predict online;
- the train job is claimed by the real Dispatcher, whose runner turns the Job manifest that
  runner/k8s_manifest.py builds (command, env, ConfigMap values, projected secrets, securityContext)
  into a ``podman run`` of the job image: the real worker trains the model against the host's services.

Missing podman/crun/mmdebstrap skips these tests (``make setup-services`` installs them); under
``CI=true`` it fails them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.services import REPO_ROOT, free_port, in_ci

IMAGES_SH = REPO_ROOT / "scripts" / "images.sh"
BUILD_TIMEOUT = float(os.environ.get("KUBEPREDICT_IMAGES_BUILD_TIMEOUT", "3600"))
FUNCTIONS = ("upload", "train", "predict", "result")
RUN_AS = "10001:10001"  # runAsUser/runAsGroup of every pod (infra/base, runner/k8s_manifest.py)

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 600)


def _unavailable(why: str) -> None:
    if in_ci():
        pytest.fail(f"{why} (CI=true: the image tests are required)", pytrace=False)
    pytest.skip(why)


class Images:
    """podman with the store and configuration scripts/images.sh writes; the built image names."""

    def __init__(self, env: dict[str, str], build_seconds: float):
        self.env, self.build_seconds = env, build_seconds
        self.names = {"job": env["JOB_IMAGE"], **{fn: env[f"{fn.upper()}_IMAGE"] for fn in FUNCTIONS}}
        self._podman_env = {
            **os.environ,
            **{k: env[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF")},
            "TMPDIR": str(Path(env["IMAGES_CACHE"]) / "tmp"),
        }

    def podman(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            ["podman", *args],
            env=self._podman_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])}… exit {out.returncode}:\n{out.stderr[-3000:]}")
        return out

    def config(self, image: str) -> dict:
        return json.loads(self.podman("image", "inspect", image).stdout)[0]["Config"]


@pytest.fixture(scope="module")
def images() -> Images:
    for tool, pkg in (("podman", "podman"), ("runc", "runc"), ("mmdebstrap", "mmdebstrap")):
        if not shutil.which(tool):
            _unavailable(f"`{tool}` not found: apt-get install {pkg} (make setup-services)")
    t0 = time.monotonic()
    out = subprocess.run(
        ["bash", str(IMAGES_SH), "build"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    seconds = time.monotonic() - t0
    if out.returncode != 0:
        pytest.fail(f"scripts/images.sh build failed (exit {out.returncode}):\n{out.stderr[-4000:]}", pytrace=False)
    print(f"\n[images] scripts/images.sh build: {seconds:.0f} s\n{out.stderr.strip()}")
    env = dict(
        line.split("=", 1)
        for line in subprocess.run(
            ["bash", str(IMAGES_SH), "env"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    return Images(env, seconds)


def _hardened(name: str) -> list[str]:
    """`podman run` flags for what the manifests declare: read-only root, tmpfs /tmp, no capabilities."""
    return [
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp:rw,mode=1777,size=512m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pull",
        "never",
    ]


def _secrets_dir(path: Path, values: dict[str, str]) -> Path:
    """Files as a projected Secret lays them out: defaultMode 0440, readable through the pod's group."""
    path.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        f = path / name
        f.write_text(value)
        os.chown(f, 0, 10001)
        f.chmod(0o440)
    return path


def _csv(rows: int = 90) -> bytes:
    lines = ["x1,x2,colour,label"]
    for i in range(rows):
        x1, x2 = (i * 37 % 100) / 10, (i * 53 % 100) / 10
        lines.append(f"{x1:.1f},{x2:.1f},{('red', 'green', 'blue')[i % 3]},{'yes' if x1 + x2 > 9 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


# -- the images themselves ------------------------------------------------------------------------------


def test_images_run_as_their_non_root_user_on_a_read_only_root(images):
    for kind, image in images.names.items():
        user = images.config(image).get("User") or "root"
        assert user not in ("", "root", "0", "0:0"), f"{kind} image runs as {user!r}"
        name = f"kp-img-{kind}-{uuid.uuid4().hex[:6]}"
        # the image's own user (the function images) or the pod's runAsUser (job image, as in the Job)
        user_flags = ["--user", RUN_AS] if kind == "job" else []
        out = images.podman(
            "run",
            "--rm",
            *_hardened(name),
            *user_flags,
            image,
            "sh",
            "-c",
            "id -u; id -g; touch /probe 2>/dev/null && echo root-writable; "
            "touch /tmp/probe && echo tmp-writable; python -c 'import kubepredict, sklearn'",
            timeout=120,
        )
        lines = out.stdout.split()
        assert lines[:2] == ["10001", "10001"], (kind, out.stdout, out.stderr)
        assert "root-writable" not in lines and "tmp-writable" in lines, (kind, out.stdout)


def test_job_image_entry_point_is_the_kubepredict_cli(images):
    out = images.podman(
        "run",
        "--rm",
        *_hardened(f"kp-img-cli-{uuid.uuid4().hex[:6]}"),
        "--user",
        RUN_AS,
        images.names["job"],
        timeout=120,
    )  # CMD: kubepredict --help
    assert "worker" in out.stdout and "dispatcher" in out.stdout, out.stdout + out.stderr


# -- functions over HTTP, the worker through the Dispatcher -------------------------------------------------


def _function_env(fn: str, bucket: dict, port: int) -> dict[str, str]:
    """stack.yml's environment for ``fn`` (env.yml, then its own), with the host's services swapped in."""
    stack = yaml.safe_load((REPO_ROOT / "stack.yml").read_text())["functions"][fn]
    env = dict(yaml.safe_load((REPO_ROOT / "infra/openfaas/env.yml").read_text())["environment"])
    env.update({k: str(v) for k, v in (stack.get("environment") or {}).items()})
    env.update(
        {
            "KUBEPREDICT_STORAGE_URL": bucket["storage_url"],
            "KUBEPREDICT_S3_ENDPOINT_URL": bucket["endpoint_url"],
            "KUBEPREDICT_S3_REGION": bucket["region"],
            "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS": "",
            "upstream_url": f"http://127.0.0.1:{port}",  # the port index.py listens on (of-watchdog's upstream)
        }
    )
    return {k: v for k, v in env.items() if not k.startswith("KUBEPREDICT_JOB_IMAGE")}


def _env_flags(env: dict[str, str]) -> list[str]:
    return [flag for k, v in env.items() for flag in ("--env", f"{k}={v}")]


class FunctionContainers:
    def __init__(self, images: Images, bucket: dict, secrets: Path):
        self.images, self.bucket, self.secrets = images, bucket, secrets
        self.urls: dict[str, str] = {}
        self.names: list[str] = []

    def start(self, fn: str) -> None:
        port = free_port()
        name = f"kp-fn-{fn}-{uuid.uuid4().hex[:6]}"
        self.images.podman(
            "run",
            "-d",
            *_hardened(name),
            "--volume",
            f"{self.secrets}:/var/openfaas/secrets:ro",  # OpenFaaS mounts secrets here
            *_env_flags(_function_env(fn, self.bucket, port)),
            self.images.names[fn],
        )
        self.names.append(name)
        self.urls[fn] = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for fn, url in self.urls.items():
            while True:
                try:
                    if fn == "train" and httpx.get(f"{url}/algorithms", timeout=5).status_code == 200:
                        break
                    if fn != "train" and httpx.get(url, timeout=5).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{fn} did not answer within {timeout:.0f} s; log:\n{self.logs(fn)}")
                time.sleep(0.5)

    def logs(self, fn: str) -> str:
        name = next(n for n in self.names if n.startswith(f"kp-fn-{fn}-"))
        out = self.images.podman("logs", name, check=False)
        return (out.stdout + out.stderr)[-3000:]

    def stop(self) -> None:
        for name in self.names:
            self.images.podman("rm", "-f", "-t", "2", name, check=False, timeout=60)


def _podman_runner(images: Images, secrets: Path, configmap_env: dict[str, str], runs: list):
    """The Dispatcher's runner: the pod of build_job()'s Job, run by podman as the kubelet would run it."""
    from kubepredict.runner.base import JobRunner
    from kubepredict.runner.k8s_manifest import SECRETS_DIR, JobTemplate, build_job

    class PodmanNode(JobRunner):
        def submit(self, spec):
            job = build_job(spec, JobTemplate(image=images.names["job"]))
            pod = job["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            ctx, sc = pod["securityContext"], container["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
            assert {v["mountPath"] for v in container["volumeMounts"]} == {SECRETS_DIR, "/tmp"}
            env = dict(configmap_env)  # envFrom: the ConfigMap, then the container's own env
            env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
            name = job["metadata"]["name"]
            t0 = time.monotonic()
            out = images.podman(
                "run",
                "--rm",
                *_hardened(name),
                "--user",
                f"{ctx['runAsUser']}:{ctx['runAsGroup']}",
                "--volume",
                f"{secrets}:{SECRETS_DIR}:ro",
                *_env_flags(env),
                container["image"],
                *container["command"],
                timeout=600,
                check=False,
            )
            runs.append(
                {
                    "spec": spec,
                    "job": job,
                    "returncode": out.returncode,
                    "seconds": time.monotonic() - t0,
                    "log": (out.stdout + out.stderr)[-4000:],
                }
            )

        def cancel(self, job_id):
            pass

    return PodmanNode()


@pytest.fixture(scope="module")
def loop(images, postgres_server, s3_server, tmp_path_factory):
    """upload → train (queued by the train function, run by the job image) → result → predict, once."""
    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.runner.dispatcher import Dispatcher

    database_url = postgres_server.create_database()
    bucket_name = s3_server.create_bucket()
    bucket = {
        "storage_url": f"s3://{bucket_name}/kubepredict",
        "endpoint_url": s3_server.endpoint_url,
        "region": s3_server.region,
    }
    secrets = _secrets_dir(
        tmp_path_factory.mktemp("secrets"),
        {
            "kubepredict-database-url": database_url,
            "kubepredict-s3-access-key-id": s3_server.access_key_id,
            "kubepredict-s3-secret-access-key": s3_server.secret_access_key,
        },
    )
    secrets.chmod(0o755)
    settings = Settings(
        database_url=database_url,
        storage_url=bucket["storage_url"],
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
        s3_addressing_style="path",
        runner="kubernetes",
        max_concurrent_jobs=1,
    )
    svc = bootstrap(settings)  # the schema, as a deployment's migration step creates it
    configmap = yaml.safe_load((REPO_ROOT / "infra/base/configmap.yaml").read_text())["data"]
    configmap_env = {
        **configmap,
        "KUBEPREDICT_STORAGE_URL": bucket["storage_url"],
        "KUBEPREDICT_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS": "",
        "KUBEPREDICT_HEARTBEAT_SECONDS": "0.5",
    }
    runs: list = []
    dispatcher = Dispatcher(svc.catalog, _podman_runner(images, secrets, configmap_env, runs), settings)
    fns = FunctionContainers(images, bucket, secrets)
    out: dict = {"runs": runs, "fns": fns}
    try:
        t0 = time.monotonic()
        for fn in FUNCTIONS:
            fns.start(fn)
        fns.wait_ready()
        out["ready_seconds"] = time.monotonic() - t0
        u = fns.urls
        out["upload"] = httpx.post(
            f"{u['upload']}/?name=images-it", content=_csv(), headers={"Content-Type": "text/csv"}, timeout=60
        )
        dataset_id = out["upload"].json()["dataset_id"]
        out["train"] = httpx.post(
            f"{u['train']}/",
            json={
                "dataset_id": dataset_id,
                "target": "label",
                "algorithm": "random_forest",
                "params": {"n_estimators": 20},
            },
            timeout=60,
        )
        job_id = out["train"].json()["job_id"]
        out["queued"] = httpx.get(f"{u['result']}/{job_id}", timeout=30).json()
        out["dispatched"] = dispatcher.tick()
        out["job"] = httpx.get(f"{u['result']}/{job_id}", timeout=30).json()
        out["predict"] = httpx.post(
            f"{u['predict']}/",
            json={
                "model_id": out["train"].json()["model_id"],
                "instances": [{"x1": 9.0, "x2": 8.0, "colour": "red"}, {"x1": 0.5, "x2": 1.0, "colour": "blue"}],
            },
            timeout=60,
        )
        yield out
    finally:
        fns.stop()
        with contextlib.suppress(Exception):
            svc.catalog.dispose()
        with contextlib.suppress(Exception):
            postgres_server.drop_database(database_url)


def test_function_images_answer_http_against_host_services(loop):
    assert loop["upload"].status_code == 201, loop["upload"].text + loop["fns"].logs("upload")
    assert loop["upload"].json()["rows"] == 90
    assert loop["train"].status_code == 202, loop["train"].text + loop["fns"].logs("train")
    assert loop["queued"]["status"] == "queued", loop["queued"]


def test_job_image_worker_trains_through_the_dispatcher(loop):
    assert loop["dispatched"] == 1
    (run,) = loop["runs"]
    assert run["spec"].kind == "train" and run["spec"].attempt == 1
    assert run["returncode"] == 0, run["log"]
    job = loop["job"]
    assert job["status"] == "succeeded", (job, run["log"])


def test_predict_function_serves_the_model_the_job_image_trained(loop):
    res = loop["predict"]
    assert res.status_code == 200, res.text + loop["fns"].logs("predict")
    body = res.json()
    assert body["predictions"] == ["yes", "no"], body
    assert set(body["classes"]) == {"yes", "no"}
