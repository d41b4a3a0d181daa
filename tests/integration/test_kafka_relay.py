"""The outbox relay against the real broker: order per key, structured CloudEvents, marks sent, survives no broker."""

from __future__ import annotations

import json

import pytest

from kubepredict.config import Settings
from kubepredict.errors import BackendUnavailable
from kubepredict.events.relay import OutboxRelay

from .kafka_helpers import TopicReader, topics


def emit(catalog, kind: str, key: str, **data) -> dict:
    with catalog.tx() as conn:
        return catalog.emit(conn, kind, key, {"job_id": key, **data})


def test_relay_publishes_pending_rows_in_order_and_marks_them_sent(catalog, kafka_bootstrap, kafka_topic_prefix):
    t = topics(kafka_topic_prefix)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_events=t["events"])
    written = []
    for i in range(30):
        key = f"job_{i % 3}"
        for kind in ("job.queued", "job.started", "job.succeeded"):
            written.append(emit(catalog, kind, key, n=i))
    relay = OutboxRelay(catalog, settings, batch=40)
    try:
        assert relay.drain(120) == len(written)
    finally:
        relay.close()
    assert catalog.pending_count() == 0

    reader = TopicReader(kafka_bootstrap, t["events"])
    try:
        reader.until(lambda ms: len(ms) >= len(written), what="every event")
        msgs = reader.messages
    finally:
        reader.close()
    assert [json.loads(m.value())["id"] for m in msgs] == [e["id"] for e in written]  # one partition: seq order
    for m, e in zip(msgs, written, strict=True):
        assert m.key().decode() == e["subject"]
        assert dict(m.headers())["content-type"] == b"application/cloudevents+json"
        assert json.loads(m.value()) == e


def test_relay_without_broker_keeps_rows_pending(catalog, kafka_topic_prefix):
    from tests.services import free_port

    settings = Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        topic_events=f"{kafka_topic_prefix}ev",
        kafka_options="message.timeout.ms=1500",
    )
    emit(catalog, "job.queued", "job_x")
    relay = OutboxRelay(catalog, settings)
    try:
        with pytest.raises(BackendUnavailable):
            relay.publish_batch()
    finally:
        relay._producer = None  # nothing to flush to a broker that is not there
    assert catalog.pending_count() == 1
