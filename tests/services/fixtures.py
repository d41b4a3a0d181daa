"""pytest fixtures for the real backing services.

Load with ``pytest_plugins = ["tests.services.fixtures"]`` in the top-level
tests/conftest.py.

Session-scoped (one process per test session, or per xdist worker):
    postgres_server, s3_server, kafka_broker, prometheus_server
Function-scoped (cleaned per test):
    postgres_url        SQLAlchemy URL of a fresh database, dropped afterwards
    s3_bucket           dict for a fresh bucket, emptied and deleted afterwards
    kafka_bootstrap     "127.0.0.1:PORT"
    kafka_topic_prefix  unique prefix for this test's topics and consumer groups
    prometheus          the server with test scrape configs and pushed groups reset

A service whose binary/jar is missing skips the test with what is missing and
how to get it (``make setup-services``); with ``CI=true`` it fails instead. A
service that is installed but does not start always fails, with its log tail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import pytest

from . import Service, ServiceStartError, ServiceUnavailable, in_ci

if TYPE_CHECKING:
    from .postgres import PostgresServer

S = TypeVar("S", bound=Service)


def _unavailable(name: str, why: BaseException) -> None:
    msg = f"{name} unavailable: {why}"
    if in_ci():
        pytest.fail(f"{msg} (CI=true: services are required)", pytrace=False)
    pytest.skip(msg)


def _start(name: str, start: Callable[[], S], request: pytest.FixtureRequest) -> S:
    """Run ``start()``; turn ServiceUnavailable into skip (fail under CI), start errors into fail."""
    started: list[Service] = []
    # registered before starting: whatever got started is stopped at session end
    request.addfinalizer(lambda: [s.stop() for s in started])
    unavailable = failed = None
    try:
        started.append(start())
    except ServiceUnavailable as why:
        unavailable = why
    except ServiceStartError as err:
        failed = err
    # outside the except blocks, so the report isn't a chained traceback
    if unavailable is not None:
        _unavailable(name, unavailable)
    if failed is not None:
        pytest.fail(str(failed), pytrace=False)
    return started[0]  # type: ignore[return-value]


# -- PostgreSQL -------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server(request) -> PostgresServer:
    from .postgres import PostgresServer

    return _start("PostgreSQL", lambda: PostgresServer().start(), request)


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """``postgresql+psycopg://postgres@127.0.0.1:PORT/tXXXXXXXXXX``: a fresh, empty database."""
    url = postgres_server.create_database()
    yield url
    with contextlib.suppress(Exception):
        postgres_server.drop_database(url)


# -- S3 -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_server(request):
    """S3Proxy (signatures checked); moto when Java/the jar is missing, except under CI=true.

    ``s3_server.checks_signatures`` tells which one you got.
    """
    from .s3 import start_s3_server

    return _start("S3 server (S3Proxy)", start_s3_server, request)


@pytest.fixture
def s3_bucket(s3_server, request) -> Iterator[dict]:
    """A fresh bucket: endpoint_url, bucket, prefix, access_key_id, secret_access_key,
    region, storage_url (``s3://bucket/prefix``), env (AWS_* variables) and server."""
    bucket = s3_server.create_bucket()
    prefix = "kubepredict"
    yield {
        "endpoint_url": s3_server.endpoint_url,
        "bucket": bucket,
        "prefix": prefix,
        "access_key_id": s3_server.access_key_id,
        "secret_access_key": s3_server.secret_access_key,
        "region": s3_server.region,
        "storage_url": f"s3://{bucket}/{prefix}",
        "env": s3_server.env(),
        "server": s3_server,
    }
    with contextlib.suppress(Exception):
        s3_server.delete_bucket(bucket)


# -- Kafka ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kafka_broker(request):
    from .kafka import KafkaBroker

    return _start("Kafka", lambda: KafkaBroker().start(), request)


@pytest.fixture
def kafka_bootstrap(kafka_broker) -> str:
    """``127.0.0.1:PORT`` of the session's broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def kafka_topic_prefix(kafka_broker, request) -> str:
    """Unique ``<test-name>.<hex8>.`` prefix: name this test's topics and groups with it."""
    return kafka_broker.topic_prefix(request.node.name)


# -- Prometheus -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def prometheus_server(request):
    from .prometheus import PrometheusServer

    return _start("Prometheus", lambda: PrometheusServer().start(), request)


@pytest.fixture
def prometheus(prometheus_server):
    """The session's Prometheus, with test scrape configs and pushgateway groups wiped after."""
    yield prometheus_server
    with contextlib.suppress(Exception):
        prometheus_server.reset()


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool`` (skips/fails like the services when missing)."""
    from .prometheus import promtool_path

    try:
        return promtool_path()
    except ServiceUnavailable as why:
        missing = why
    _unavailable("promtool", missing)
