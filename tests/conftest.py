"""Shared fixtures: real gateway processes, and (when present) the real-service fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess

pytest_plugins = [
    p for p in ("tests.services.fixtures",) if (Path(__file__).parent / "services" / "fixtures.py").is_file()
]

IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing on a laptop; under CI=true the same condition fails the run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


BACKENDS = ("embedded", "postgres-s3")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """Every end-to-end test runs twice: embedded defaults, then real PostgreSQL + S3 (S3Proxy)."""
    return request.param


@pytest.fixture(scope="session")
def backend_env(request, backend):
    """``env_for(key)``: environment pointing a gateway at this backend; one database and bucket per key."""
    made: dict = {}

    def env_for(key: str) -> dict:
        if backend == "embedded":
            return {}
        if key not in made:
            pg = request.getfixturevalue("postgres_server")
            s3 = request.getfixturevalue("s3_server")
            bucket = s3.create_bucket()
            made[key] = {"KUBEPREDICT_DATABASE_URL": pg.create_database(), **s3.kubepredict_env(bucket)}
        return made[key]

    return env_for


@pytest.fixture(scope="session")
def gateway_proc(tmp_path_factory, backend, backend_env):
    """One real ``kubepredict serve`` per backend for the session (local worker processes)."""
    gw = GatewayProcess(
        tmp_path_factory.mktemp(f"gateway-{backend}"),
        env={
            "KUBEPREDICT_MAX_CONCURRENT_JOBS": "2",
            "KUBEPREDICT_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
            "KUBEPREDICT_MAX_ONLINE_ROWS": "1000",
            **backend_env("session"),
        },
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway_proc) -> str:
    return gateway_proc.url


@pytest.fixture
def start_gateway(tmp_path, backend_env):
    """Factory for a private gateway with its own environment (stopped after the test).

    The same ``data_dir`` means the same database and bucket (a restart), a new one a fresh backend.
    """
    started = []

    def start(env: dict | None = None, data_dir: Path | None = None) -> GatewayProcess:
        data_dir = data_dir or tmp_path / f"gw{len(started)}"
        gw = GatewayProcess(data_dir, env={**backend_env(str(data_dir)), **(env or {})}).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
