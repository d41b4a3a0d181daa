"""Relay and connector inside ``kubepredict serve`` (``make run``) when Kafka is configured."""

from __future__ import annotations

import logging

from .connector import KafkaConnector
from .relay import OutboxRelay

logger = logging.getLogger(__name__)


def local_gateway_url(settings) -> str:
    """This process's own gateway: the embedded connector always invokes the functions next to it."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"


def start_kafka_loops(services) -> list:
    """Start the outbox relay and the connector, each in a daemon thread; call ``.stop()`` on each to end them."""
    settings = services.settings
    relay = OutboxRelay(services.catalog, settings).start()
    connector = KafkaConnector(settings, gateway_url=local_gateway_url(settings)).start()
    logger.info("Kafka at %s: relay and connector running in-process", settings.kafka_bootstrap_servers)
    return [relay, connector]
