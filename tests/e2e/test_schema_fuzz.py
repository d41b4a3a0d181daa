"""Schema-driven fuzzing: schemathesis runs against a real gateway on every route of /openapi.json.

Checks: no server error, responses conform to the documented schema, status codes and content types
are documented, response headers conform, and requests that violate the schema are refused (4xx).
Phases: the documented examples, boundary coverage, random fuzzing, then stateful chains over the
document's OpenAPI links (upload → train → predict/infer → result/cancel). Zero failures allowed.

Bounded for CI (``KUBEPREDICT_FUZZ_EXAMPLES``, default 25 per route); ``make fuzz`` runs it longer.
Jobs queued by the fuzzer run one at a time and at most a few wait (429 beyond, a documented answer).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_process import REPO, GatewayProcess

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("KUBEPREDICT_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("KUBEPREDICT_FUZZ_SEED")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance,negative_data_rejection"
)


@pytest.fixture
def fuzz_gateway(tmp_path):
    env = {
        "KUBEPREDICT_MAX_CONCURRENT_JOBS": "1",
        "KUBEPREDICT_MAX_QUEUED_JOBS": "4",
        "KUBEPREDICT_MAX_UPLOAD_BYTES": str(1024 * 1024),
        "KUBEPREDICT_MAX_ONLINE_ROWS": "1000",
    }
    with GatewayProcess(tmp_path / "gw", env=env) as gw:
        yield gw


def test_schemathesis_finds_no_failure(fuzz_gateway, tmp_path):
    st = Path(sys.executable).with_name("st")
    cmd = [
        str(st),
        "run",
        f"{fuzz_gateway.url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    if SEED:
        cmd += ["--seed", SEED]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    # run from a scratch folder: schemathesis and hypothesis keep their caches in the working directory
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    report = run.stdout[-20000:] + run.stderr[-4000:]
    assert run.returncode == 0, report + "\n--- gateway log ---\n" + fuzz_gateway.log_tail(40)
    assert "Stateful" in run.stdout and "Fuzzing" in run.stdout, report  # every phase ran
    assert "Internal Server Error" not in fuzz_gateway.log_tail(400)
