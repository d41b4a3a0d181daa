"""Small helpers for the Kafka integration tests: produce, read a topic, a gateway environment per test."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

IRIS = Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv"


def topics(prefix: str) -> dict[str, str]:
    return {
        "train": f"{prefix}train.requests",
        "predict": f"{prefix}predict.requests",
        "events": f"{prefix}events",
        "dead_letter": f"{prefix}dead-letter",
        "stream": f"{prefix}predict.stream",
        "predictions": f"{prefix}predictions",
    }


def kafka_env(bootstrap: str, prefix: str, **extra) -> dict[str, str]:
    """Environment for a gateway/relay/connector using this test's own topics and group."""
    t = topics(prefix)
    return {
        "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KUBEPREDICT_TOPIC_TRAIN_REQUESTS": t["train"],
        "KUBEPREDICT_TOPIC_PREDICT_REQUESTS": t["predict"],
        "KUBEPREDICT_TOPIC_EVENTS": t["events"],
        "KUBEPREDICT_TOPIC_DEAD_LETTER": t["dead_letter"],
        "KUBEPREDICT_TOPIC_PREDICT_STREAM": t["stream"],
        "KUBEPREDICT_TOPIC_PREDICTIONS": t["predictions"],
        "KUBEPREDICT_CONNECTOR_GROUP": f"{prefix}connector",
        "KUBEPREDICT_STREAM_GROUP": f"{prefix}stream",
        **extra,
    }


def produce(bootstrap: str, topic: str, values: list, key: bytes | None = None, headers=None) -> None:
    """Publish messages (dicts as JSON, bytes as they are) and wait for the broker's acknowledgement."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    errors = []
    for v in values:
        p.produce(
            topic,
            value=json.dumps(v).encode() if isinstance(v, (dict, list)) else v,
            key=key,
            headers=headers,
            on_delivery=lambda err, _m: err and errors.append(err),
        )
    assert p.flush(60) == 0 and not errors, errors


def cloudevent(data: dict, event_id: str | None = None) -> dict:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "/tests",
        "type": "test.train",
        "datacontenttype": "application/json",
        "data": data,
    }


class TopicReader:
    """Reads a topic from the beginning with its own group; ``until(pred)`` polls until pred(messages) holds."""

    def __init__(self, bootstrap: str, topic: str):
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 2000,
            }
        )
        self.consumer.subscribe([topic])
        self.messages: list = []

    def poll(self, seconds: float = 1.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self.consumer.poll(0.2)
            if m is not None and not m.error():
                self.messages.append(m)

    def until(self, pred, timeout: float = 120, what: str = "messages"):
        deadline = time.monotonic() + timeout
        while True:
            self.poll(0.5)
            value = pred(self.messages)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; have {len(self.messages)}")

    def events(self) -> list[dict]:
        return [json.loads(m.value()) for m in self.messages]

    def close(self) -> None:
        self.consumer.close()


def wait_for(check, timeout: float = 120, what: str = "condition", interval: float = 0.3):
    """Poll ``check()`` until truthy (exceptions count as not yet)."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - "not yet": reported if the wait times out
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last!r})")
        time.sleep(interval)
