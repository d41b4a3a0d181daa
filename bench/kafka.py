"""Kafka throughput: request messages/s through connector → train function → job queue, and events/s through the relay.

Run: ``python -m bench.kafka`` (starts its own Kafka 4.1.1 broker from the jars of ``make setup-services``).
``BENCH_KAFKA_REQUESTS`` (default 500) and ``BENCH_KAFKA_EVENTS`` (default 5000) set the sizes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.gateway_process import GatewayProcess

REQUESTS = int(os.environ.get("BENCH_KAFKA_REQUESTS", "500"))
EVENTS = int(os.environ.get("BENCH_KAFKA_EVENTS", "5000"))
IRIS = Path(__file__).resolve().parents[1] / "shared" / "kubepredict" / "data" / "iris.csv"


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "log_level": 3})
    for v in values:
        p.produce(topic, v)
        p.poll(0)
    assert p.flush(60) == 0


def requests_per_second(bootstrap: str, tmp: Path) -> dict:
    """N train requests queued by one connector against a gateway that runs no jobs (queueing only)."""
    from kubepredict.config import Settings
    from kubepredict.events.connector import KafkaConnector

    env = {
        "KUBEPREDICT_LOG_LEVEL": "WARNING",
        "KUBEPREDICT_MAX_CONCURRENT_JOBS": "0",
        "KUBEPREDICT_MAX_QUEUED_JOBS": str(REQUESTS * 2),
    }
    with GatewayProcess(tmp / "gw", env=env) as gw:
        http = httpx.Client(base_url=gw.url, timeout=60)
        ds = http.post(
            "/function/upload", params={"name": "iris"}, content=IRIS.read_bytes(), headers={"Content-Type": "text/csv"}
        ).json()["dataset_id"]
        body = json.dumps({"dataset_id": ds, "target": "species", "algorithm": "logistic_regression"}).encode()
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            topic_train_requests="bench.train.requests",
            topic_dead_letter="bench.dead-letter",
            gateway_url=gw.url,
        )
        _produce(bootstrap, settings.topic_train_requests, [body] * REQUESTS)
        first: list[float] = []
        connector = KafkaConnector(
            settings, group_id="bench", after_invoke=lambda *_: first or first.append(time.perf_counter())
        )
        connector.start()
        try:
            deadline = time.monotonic() + 600
            while connector.committed < REQUESTS and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - first[0]
        finally:
            connector.stop()
        queued = http.get("/function/result", params={"kind": "train", "status": "queued", "limit": 1}).json()["total"]
    assert queued == REQUESTS, f"{queued} jobs queued, expected {REQUESTS}"
    return {"requests": REQUESTS, "seconds": round(elapsed, 2), "per_second": round(REQUESTS / elapsed, 1)}


def events_per_second(bootstrap: str, tmp: Path) -> dict:
    """N outbox rows (SQLite catalogue) published by the relay and marked sent."""
    from confluent_kafka import Consumer, TopicPartition

    from kubepredict.catalog import open_catalog
    from kubepredict.config import Settings
    from kubepredict.events.relay import OutboxRelay

    catalog = open_catalog(f"sqlite:///{tmp / 'relay.db'}")
    with catalog.tx() as conn:
        for i in range(EVENTS):
            catalog.emit(conn, "job.queued", f"job_{i % 500:04d}", {"job_id": f"job_{i % 500:04d}", "n": i})
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_events="bench.events")
    relay = OutboxRelay(catalog, settings)
    start = time.perf_counter()
    sent = relay.drain(600)
    elapsed = time.perf_counter() - start
    relay.close()
    assert sent == EVENTS and catalog.pending_count() == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-check"})
    _, high = c.get_watermark_offsets(TopicPartition("bench.events", 0), timeout=10)
    c.close()
    catalog.dispose()
    assert high == EVENTS, f"{high} messages on the topic, expected {EVENTS}"
    return {"events": EVENTS, "seconds": round(elapsed, 2), "per_second": round(EVENTS / elapsed, 1)}


def main() -> None:
    from tests.services import ServiceUnavailable
    from tests.services.kafka import KafkaBroker

    try:
        broker = KafkaBroker().start()
    except ServiceUnavailable as exc:
        sys.exit(f"bench.kafka needs the Kafka jars: {exc}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            req = requests_per_second(broker.bootstrap, Path(tmp))
            ev = events_per_second(broker.bootstrap, Path(tmp))
    finally:
        broker.stop()
    print(f"{'measure':<58} {'count':>7} {'seconds':>8} {'per second':>11}")
    print(
        f"{'train requests: Kafka → connector → train → job queued':<58} {req['requests']:>7} "
        f"{req['seconds']:>8} {req['per_second']:>11}"
    )
    print(
        f"{'events: outbox (SQLite) → relay → Kafka, marked sent':<58} {ev['events']:>7} "
        f"{ev['seconds']:>8} {ev['per_second']:>11}"
    )
    print(json.dumps({"kafka_requests": req, "kafka_events": ev}))


if __name__ == "__main__":
    main()
