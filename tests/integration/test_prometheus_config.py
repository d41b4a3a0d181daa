"""infra/prometheus/: configs pass ``promtool check config``, rules ``promtool check rules``, and the
rule unit tests ``promtool test rules``; the local config really scrapes a gateway and loads the rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.gateway_process import REPO, GatewayProcess
from tests.services import CACHE_ROOT, in_ci

PROM = REPO / "infra" / "prometheus"


def _run(*args, cwd: Path = PROM) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def _supports_kubernetes_sd(promtool: str, tmp_path: Path) -> bool:
    probe = tmp_path / "probe.yml"
    probe.write_text("scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs: [{role: pod}]\n")
    return _run(promtool, "check", "config", str(probe)).returncode == 0


def test_local_config_is_valid(promtool):
    out = _run(promtool, "check", "config", "prometheus-local.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_cluster_config_is_valid(promtool, tmp_path):
    """Debian builds Prometheus without Kubernetes service discovery (upstream images have it). There,
    the same file is checked with each ``kubernetes_sd_configs`` swapped for an empty static list, so
    everything else (relabelling regexes, rule files, globals) still goes through promtool."""
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert {"openfaas-gateway", "kubepredict-functions", "kubepredict-services"} <= set(jobs)
    for c in jobs.values():
        assert [sd["role"] for sd in c["kubernetes_sd_configs"]] == ["pod"]
    annotations = {
        r["source_labels"][0]
        for c in jobs.values()
        if c["job_name"] != "openfaas-gateway"
        for r in c["relabel_configs"]
        if r.get("source_labels")
    }
    assert {
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
        "__meta_kubernetes_pod_annotation_prometheus_io_path",
    } <= annotations
    if _supports_kubernetes_sd(promtool, tmp_path):
        out = _run(promtool, "check", "config", "prometheus.yml")
    else:
        for c in config["scrape_configs"]:
            c["static_configs"] = []
            del c["kubernetes_sd_configs"]
        (tmp_path / "rules").symlink_to(PROM / "rules")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        out = _run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


UPSTREAM_PROMTOOL = CACHE_ROOT / "promtool" / "bin" / "promtool"


def test_cluster_config_passes_upstream_promtool():
    """The cluster file as is, Kubernetes discovery included, through upstream promtool (scripts/build-promtool.sh)."""
    if not UPSTREAM_PROMTOOL.is_file():
        reason = f"upstream promtool not built at {UPSTREAM_PROMTOOL}; run scripts/build-promtool.sh"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    out = _run(str(UPSTREAM_PROMTOOL), "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid prometheus config file syntax" in out.stdout and "SUCCESS: 10 rules found" in out.stdout
    rules = _run(str(UPSTREAM_PROMTOOL), "test", "rules", *sorted(str(p) for p in (PROM / "tests").glob("*.yml")))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_rules_are_valid(promtool):
    out = _run(promtool, "check", "rules", *sorted(str(p) for p in (PROM / "rules").glob("*.yml")))
    assert out.returncode == 0, out.stdout + out.stderr


def test_rule_unit_tests_pass(promtool):
    tests = sorted(str(p) for p in (PROM / "tests").glob("*.yml"))
    assert tests
    out = _run(promtool, "test", "rules", *tests)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_severity_summary_description_and_for():
    names = set()
    for path in (PROM / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                names.add(rule["alert"])
                assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
                assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
                assert rule.get("for"), rule["alert"]
    assert {
        "KubepredictJobsFailing",
        "KubepredictQueueGrowing",
        "KubepredictOutboxBacklog",
        "KubepredictFunctionErrors",
        "KubepredictJobStuckRunning",
        "KubepredictFeatureDrift",
    } <= names
    tested = (PROM / "tests" / "kubepredict.rules.test.yml").read_text()
    assert all(f"alertname: {n}" in tested for n in names), "every alert has a promtool unit test"


@pytest.mark.slow
def test_local_config_scrapes_a_gateway(tmp_path, promtool):
    """What `make monitor` runs: Debian's prometheus with prometheus-local.yml against a gateway."""
    import shutil
    import socket
    import time

    import httpx

    prometheus = shutil.which("prometheus")
    assert prometheus, "promtool is installed, so is prometheus (same Debian package)"
    gw = GatewayProcess(tmp_path / "gw").start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "rules").symlink_to(PROM / "rules")
    (tmp_path / "prometheus.yml").write_text(
        (PROM / "prometheus-local.yml").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{gw.port}")
    )
    with open(tmp_path / "prometheus.log", "ab") as log:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": 'up{job="kubepredict"}'})
                result = r.json()["data"]["result"]
                if result and result[0]["value"][1] == "1":
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, "prometheus-local.yml never scraped the gateway"
            time.sleep(0.5)
        rules = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules").json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) == 10
    finally:
        proc.terminate()
        proc.wait(30)
        gw.stop()


@pytest.mark.slow
def test_make_monitor_sends_the_token_when_one_is_set(tmp_path, promtool):
    """With KUBEPREDICT_API_TOKEN (and a read token) set, /metrics needs a token: `make monitor` writes the
    read-only one to a file and scrapes with it (up == 1), and the generated config passes promtool."""
    import os
    import signal
    import socket
    import time

    import httpx

    tokens = {"KUBEPREDICT_API_TOKEN": "mon-write", "KUBEPREDICT_READ_TOKEN": "mon-read"}
    gw = GatewayProcess(tmp_path / "gw", env=tokens).start()
    assert httpx.get(f"{gw.url}/metrics").status_code == 401
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    with open(tmp_path / "make.log", "ab") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "monitor", f"DATA={data}", f"PORT={gw.port}", f"PROMETHEUS_PORT={port}"],
            cwd=PROM.parents[1],
            env={**os.environ, **tokens},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "make.log").read_text()[-2000:]
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": 'up{job="kubepredict"}'})
                result = r.json()["data"]["result"]
                if result and result[0]["value"][1] == "1":
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, "make monitor never scraped the gateway with its token"
            time.sleep(0.5)
        config = data / "prometheus" / "prometheus.yml"
        assert "credentials_file" in config.read_text() and "mon-" not in config.read_text()
        assert (data / "prometheus" / "token").read_text() == "mon-read"
        assert (data / "prometheus" / "token").stat().st_mode & 0o077 == 0
        assert _run(promtool, "check", "config", str(config)).returncode == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        gw.stop()
