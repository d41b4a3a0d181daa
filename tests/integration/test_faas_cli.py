"""stack.yml and the OpenFaaS template: faas-cli parses and shrink-wraps them, and a build context serves a request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("upload", "train", "predict", "result")
IN_CI = os.environ.get("CI", "").lower() == "true"
PROJECT_FILES = ("stack.yml", "template", "functions", "shared", "infra/openfaas/env.yml")


def _faas_cli() -> str | None:
    local = ROOT / ".cache" / "bin" / "faas-cli"
    return str(local) if local.is_file() else shutil.which("faas-cli")


def need_faas_cli() -> str:
    """Return faas-cli's path, or skip: the Go module proxy refuses github.com/openfaas/faas-cli (403) here.

    This is the one test dependency our machines cannot obtain, so it skips even under CI=true (issue
    "Run on Kubernetes" is marked blocked on it); set KUBEPREDICT_REQUIRE_FAAS_CLI=1 to make it a failure.
    """
    path = _faas_cli()
    if path is None:
        reason = (
            "faas-cli not installed: the Go module proxy answers 403 for github.com/openfaas/faas-cli; "
            "run scripts/install-faas-cli.sh where it is reachable"
        )
        if os.environ.get("KUBEPREDICT_REQUIRE_FAAS_CLI") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", ".pytest_cache")
    for rel in PROJECT_FILES:
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    return dest


def shrinkwrap_like_faas_cli(project: Path) -> None:
    """What `faas-cli build --shrinkwrap` writes, for machines without faas-cli (faas-cli builder/build.go).

    build/<fn>/ = template/<lang>/, the handler folder's entries (but build/ and template/) overlaid on
    build/<fn>/function/, then each configuration.copy path at build/<fn>/function/<path>.
    """
    stack = yaml.safe_load((project / "stack.yml").read_text())
    copies = (stack.get("configuration") or {}).get("copy") or []
    for name, fn in stack["functions"].items():
        out = project / "build" / name
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(project / "template" / fn["lang"], out)
        (out / "function").mkdir(exist_ok=True)
        handler = project / fn["handler"]
        for entry in handler.iterdir():
            if entry.name in ("build", "template"):
                continue
            target = out / "function" / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, target)
        for rel in copies:
            src = (project / rel).resolve()
            target = out / "function" / Path(rel).as_posix().lstrip("./")
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)


@pytest.fixture(scope="module", params=["faas-cli", "emulated"])
def built(request, tmp_path_factory) -> Path:
    project = _copy_project(tmp_path_factory.mktemp(f"stack-{request.param}"))
    if request.param == "faas-cli":
        cli = need_faas_cli()
        out = subprocess.run(
            [cli, "build", "--shrinkwrap", "-f", "stack.yml"], cwd=project, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout + out.stderr
    else:
        shrinkwrap_like_faas_cli(project)
    return project


def test_stack_yml_is_an_openfaas_stack():
    stack = yaml.safe_load((ROOT / "stack.yml").read_text())
    assert stack["provider"]["name"] == "openfaas"
    assert stack["configuration"]["copy"] == ["./shared"]
    assert set(stack["functions"]) == set(FUNCTIONS)
    for name, fn in stack["functions"].items():
        assert (ROOT / "template" / fn["lang"] / "template.yml").is_file()
        assert fn["handler"] == f"./functions/{name}"
        assert {"kubepredict-database-url"} <= set(fn["secrets"])
        assert {"com.openfaas.scale.min", "com.openfaas.scale.max", "com.openfaas.scale.target"} <= set(fn["labels"])
        env = {
            **yaml.safe_load((ROOT / fn["environment_file"][0]).read_text())["environment"],
            **fn.get("environment", {}),
        }
        assert not any(
            k in env for k in ("KUBEPREDICT_DATABASE_URL", "KUBEPREDICT_API_TOKEN", "KUBEPREDICT_S3_SECRET_ACCESS_KEY")
        )
    assert stack["functions"]["train"]["annotations"]["topic"] == "kubepredict.train.requests"
    assert stack["functions"]["predict"]["annotations"]["topic"] == "kubepredict.predict.requests"
    assert stack["functions"]["upload"]["environment"]["exec_timeout"] != "30s"


def test_faas_cli_parses_stack(tmp_path):
    cli = need_faas_cli()
    project = _copy_project(tmp_path)
    out = subprocess.run(
        [cli, "generate", "-f", "stack.yml", "--api", "openfaas.com/v1"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TAG": "9.9.9"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["metadata"]["name"] for d in docs} == set(FUNCTIONS)
    train = next(d for d in docs if d["metadata"]["name"] == "train")
    assert train["spec"]["image"].endswith("/train:9.9.9")
    assert train["spec"]["annotations"]["topic"] == "kubepredict.train.requests"


def test_shrinkwrap_produces_build_contexts(built):
    for name in FUNCTIONS:
        ctx = built / "build" / name
        for rel in (
            "Dockerfile",
            "index.py",
            "template.yml",
            "requirements.txt",
            "function/__init__.py",
            "function/handler.py",
            "function/shared/pyproject.toml",
            "function/shared/constraints.txt",
            "function/shared/kubepredict/__init__.py",
        ):
            assert (ctx / rel).is_file(), f"build/{name}/{rel} missing"
        assert (ctx / "function" / "handler.py").read_text() == (ROOT / "functions" / name / "handler.py").read_text()
        dockerfile = (ctx / "Dockerfile").read_text()
        assert "pip install -c /tmp/constraints.txt /tmp/kubepredict-shared" in dockerfile and "USER app" in dockerfile


SERVE_ONE_REQUEST = r"""
import json, sys
sys.path.insert(0, ".")
import index                               # the template's python3-http entry point (ASGI app)
from function import handler               # what index imports too

class Event:                               # python3-http event, as index.Event builds it
    body = b""
    headers = {"Accept": "application/json"}
    method = "GET"
    query = {}
    path = "/algorithms"                   # the gateway strips /function/train

class Context:
    hostname = "test"

direct = handler.handle(Event(), Context())
from a2wsgi import ASGIMiddleware         # the template's app is ASGI: call it through a WSGI adapter
from werkzeug.test import Client
client = Client(ASGIMiddleware(index.app))
via_template = client.get("/algorithms")
# python3-http accepts a dict {statusCode, body, headers} or a (body, status, headers) tuple
direct_status = direct.get("statusCode", 200) if isinstance(direct, dict) else direct[1]
print(json.dumps({"direct_status": direct_status,
                  "status": via_template.status_code, "content_type": via_template.headers.get("Content-Type"),
                  "body": via_template.get_data(as_text=True)}))
"""


def test_build_context_answers_a_get(built, tmp_path):
    ctx = built / "build" / "train"
    shared = ctx / "function" / "shared"
    # The Dockerfile pip-installs function/shared; putting it first on PYTHONPATH is the same for imports.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(shared), str(ctx)]),
        "KUBEPREDICT_DATA_DIR": str(tmp_path / "data"),
        "KUBEPREDICT_RUNNER": "local",
        "KUBEPREDICT_SECRETS_DIR": str(tmp_path / "secrets"),
    }
    for var in (
        "KUBEPREDICT_DATABASE_URL",
        "KUBEPREDICT_STORAGE_URL",
        "KUBEPREDICT_API_TOKEN",
        "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS",
    ):
        env.pop(var, None)
    out = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_REQUEST], cwd=ctx, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, result
    assert result["content_type"].startswith("application/json")
    body = json.loads(result["body"])
    assert body["algorithms"] and {"name", "task"} <= set(body["algorithms"][0])
    assert result["direct_status"] == 200


@pytest.mark.gateway
def test_faas_cli_list_and_invoke_against_local_gateway(tmp_path):
    """faas-cli talks to `kubepredict serve` as to an OpenFaaS gateway (list, invoke upload)."""
    from tests.gateway_process import GatewayProcess

    cli = need_faas_cli()
    with GatewayProcess(tmp_path / "gateway") as gw:  # started only when faas-cli exists
        _list_and_invoke(cli, gw.url)


def _list_and_invoke(cli: str, gateway_url: str) -> None:
    env = {**os.environ, "OPENFAAS_URL": gateway_url}
    listed = subprocess.run(
        [cli, "list", "--gateway", gateway_url], capture_output=True, text=True, timeout=60, env=env
    )
    assert listed.returncode == 0, listed.stderr
    for name in FUNCTIONS:
        assert name in listed.stdout
    csv = "sepal_length,sepal_width,species\n5.1,3.5,setosa\n6.2,2.9,versicolor\n5.9,3.0,virginica\n"
    invoked = subprocess.run(
        [cli, "invoke", "upload", "--gateway", gateway_url, "--query", "name=faas-cli-iris"],
        input=csv,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert invoked.returncode == 0, invoked.stderr
    # faas-cli may print a notice ("Failed to lookup auth config…") before the function's answer.
    answer = invoked.stdout[invoked.stdout.index("{") :]
    dataset = json.loads(answer)
    assert dataset["dataset_id"].startswith("ds_") and dataset["rows"] == 3
