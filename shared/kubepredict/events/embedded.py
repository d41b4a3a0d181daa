"""Relay, connector and stream scorer inside ``kubepredict serve`` (``make run``) when Kafka is configured."""

from __future__ import annotations

import logging

from .connector import KafkaConnector
from .relay import OutboxRelay
from .stream import StreamScorer, default_instance

logger = logging.getLogger(__name__)


def local_gateway_url(settings) -> str:
    """This process's own gateway: the embedded connector always invokes the functions next to it."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"


def start_kafka_loops(svc) -> list:
    """Start the outbox relay, the connector and the stream scorer, each in a daemon thread; ``.stop()`` ends each."""
    settings = svc.settings
    relay = OutboxRelay(svc.catalog, settings).start()
    connector = KafkaConnector(settings, gateway_url=local_gateway_url(settings)).start()
    # one transactional id per gateway on this host: host name and port
    scorer = StreamScorer(svc, instance=f"{default_instance()}-{settings.port}").start()
    logger.info("Kafka at %s: relay, connector and stream scorer running in-process", settings.kafka_bootstrap_servers)
    return [relay, connector, scorer]
