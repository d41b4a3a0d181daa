"""Shared fixtures: real gateway processes, and (when present) the real-service fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess

pytest_plugins = [p for p in ("tests.services.fixtures",)
                  if (Path(__file__).parent / "services" / "fixtures.py").is_file()]

IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing on a laptop; under CI=true the same condition fails the run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def gateway_proc(tmp_path_factory):
    """One real ``kubepredict serve`` for the session (embedded defaults: SQLite, local folder, local workers)."""
    gw = GatewayProcess(tmp_path_factory.mktemp("gateway"),
                        env={"KUBEPREDICT_MAX_CONCURRENT_JOBS": "2", "KUBEPREDICT_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
                             "KUBEPREDICT_MAX_ONLINE_ROWS": "1000"})
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway_proc) -> str:
    return gateway_proc.url


@pytest.fixture
def start_gateway(tmp_path):
    """Factory for a private gateway with its own environment (stopped after the test)."""
    started = []

    def start(env: dict | None = None, data_dir: Path | None = None) -> GatewayProcess:
        gw = GatewayProcess(data_dir or tmp_path / f"gw{len(started)}", env=env).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
