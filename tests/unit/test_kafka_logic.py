"""Pure Kafka logic, no broker: message → invocation, idempotency keys, DLQ decisions, relay bookkeeping."""

from __future__ import annotations

import base64
import json
from collections import namedtuple

import httpx
import pytest

from kubepredict.catalog import open_catalog
from kubepredict.config import Settings
from kubepredict.errors import BackendUnavailable, ConfigError
from kubepredict.events import kafka_config, messages
from kubepredict.events.connector import KafkaConnector
from kubepredict.events.messages import Delivery, build_invocation, decide, unwrap
from kubepredict.events.relay import OutboxRelay, sendable

BODY = {"dataset_id": "ds_1", "target": "species"}


def delivery(value, headers=(), key=None, offset=7, ts=1_700_000_000_000) -> Delivery:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return Delivery("kp.train.requests", 2, offset, key, raw, tuple(headers), ts)


# ---- unwrap and keys ------------------------------------------------------------------------------
def test_bare_json_body_passes_through_without_event_id():
    body, attrs, is_json = unwrap(delivery(BODY))
    assert json.loads(body) == BODY and attrs == {} and is_json


def test_structured_cloudevent_is_unwrapped_and_its_id_is_the_key():
    ce = {
        "specversion": "1.0",
        "id": "ev-1",
        "type": "my.train",
        "source": "/x",
        "time": "2026-01-01T00:00:00Z",
        "data": BODY,
    }
    d = delivery(ce)
    body, attrs, is_json = unwrap(d)
    assert json.loads(body) == BODY and is_json
    assert attrs == {"id": "ev-1", "type": "my.train", "source": "/x", "time": "2026-01-01T00:00:00Z"}
    assert messages.idempotency_key(d, attrs.get("id")) == "ev-1"


def test_cloudevent_data_as_string_or_base64():
    assert json.loads(unwrap(delivery({"specversion": "1.0", "id": "a", "data": json.dumps(BODY)}))[0]) == BODY
    b64 = base64.b64encode(json.dumps(BODY).encode()).decode()
    body, _, is_json = unwrap(delivery({"specversion": "1.0", "id": "b", "data_base64": b64}))
    assert json.loads(body) == BODY and is_json


def test_cloudevent_without_data_gives_an_empty_body_for_the_function_to_reject():
    assert unwrap(delivery({"specversion": "1.0", "id": "c"}))[0] == b""


def test_binary_mode_cloudevent_headers_give_the_id():
    d = delivery(BODY, headers=[("ce_id", b"bin-1"), ("ce_type", b"t"), ("ce_specversion", b"1.0")])
    _, attrs, _ = unwrap(d)
    assert attrs["id"] == "bin-1" and build_invocation(d, "train").idempotency_key == "bin-1"


def test_without_event_id_the_key_is_topic_partition_offset():
    assert build_invocation(delivery(BODY), "train").idempotency_key == "kp.train.requests-2-7"


def test_malformed_body_is_forwarded_raw_for_the_function_to_refuse():
    """Labelled JSON (the functions take nothing else), so the answer is 400 invalid_json, not 415."""
    inv = build_invocation(delivery(b"{not json"), "train")
    assert inv.body == b"{not json" and inv.headers["Content-Type"] == "application/json"


# ---- headers --------------------------------------------------------------------------------------
def test_invocation_carries_kubeless_and_openfaas_connector_headers():
    d = delivery(BODY, headers=[("trace-id", b"abc"), ("content-type", b"application/json")], key=b"ds_1")
    inv = build_invocation(d, "train", token="s3cret")
    h = inv.headers
    assert h["Content-Type"] == "application/json"
    assert h["Idempotency-Key"] == h["event-id"] == "kp.train.requests-2-7"
    assert h["event-type"] == "application/json"  # Kubeless: the content type for a bare JSON object
    assert h["event-time"] == "2023-11-14 22:13:20 +0000 UTC"
    assert h["event-namespace"] == "kafkatriggers.kubeless.io" and h["event-topic"] == "kp.train.requests"
    assert (h["X-Topic"], h["X-Kafka-Partition"], h["X-Kafka-Offset"], h["X-Kafka-Key"]) == (
        "kp.train.requests",
        "2",
        "7",
        "ds_1",
    )
    assert h["X-Connector"] == "kubepredict-connector"
    assert h["X-Kafka-trace-id"] == "abc" and "X-Kafka-content-type" not in h
    assert h["Authorization"] == "Bearer s3cret"
    assert "X-Kafka-Key" not in build_invocation(delivery(BODY), "train").headers
    assert "Authorization" not in build_invocation(delivery(BODY), "train").headers


def test_cloudevent_type_and_time_win():
    ce = {"specversion": "1.0", "id": "x", "type": "my.type", "time": "2026-01-01T00:00:00Z", "data": BODY}
    h = build_invocation(delivery(ce), "train").headers
    assert h["event-type"] == "my.type" and h["event-time"] == "2026-01-01T00:00:00Z" and h["event-id"] == "x"


# ---- decisions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, action",
    [
        (200, "commit"),
        (202, "commit"),
        (400, "dead_letter"),
        (404, "dead_letter"),
        (409, "dead_letter"),
        (413, "dead_letter"),
        (415, "dead_letter"),
        (422, "dead_letter"),
        (401, "retry"),
        (403, "retry"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
        (None, "retry"),
        (301, "dead_letter"),
    ],
)
def test_decide_by_status(status, action):
    assert decide(status) == action


def test_error_of_reads_the_api_error_shape_or_the_raw_answer():
    api = json.dumps({"error": {"code": "invalid_json", "message": "bad"}}).encode()
    assert messages.error_of(400, api) == {"code": "invalid_json", "message": "bad"}
    assert messages.error_of(418, b"teapot") == {"code": "http_418", "message": "teapot"}


def test_dead_letter_headers_keep_the_original_and_say_why():
    d = delivery(b"x", headers=[("trace-id", b"abc")])
    h = dict(messages.dead_letter_headers(d, "train", 400, {"code": "invalid_json", "message": "bad"}))
    assert h["trace-id"] == b"abc"
    assert h["kubepredict.error.status"] == b"400" and h["kubepredict.error.code"] == b"invalid_json"
    assert h["kubepredict.error.message"] == b"bad" and h["kubepredict.function"] == b"train"
    assert (h["kubepredict.original.topic"], h["kubepredict.original.partition"], h["kubepredict.original.offset"]) == (
        b"kp.train.requests",
        b"2",
        b"7",
    )


# ---- configuration --------------------------------------------------------------------------------
def test_producer_is_idempotent_and_consumer_commits_by_hand():
    s = Settings(kafka_bootstrap_servers="b:9092", kafka_options="security.protocol=SSL, linger.ms=20")
    p = kafka_config.producer_config(s)
    assert p["enable.idempotence"] is True and p["acks"] == "all" and p["bootstrap.servers"] == "b:9092"
    assert p["security.protocol"] == "SSL" and p["linger.ms"] == "20"
    c = kafka_config.consumer_config(s, "g")
    assert c["group.id"] == "g" and c["enable.auto.commit"] is False and c["auto.offset.reset"] == "earliest"


def test_kafka_options_must_be_key_value_pairs():
    assert kafka_config.parse_options(None) == {}
    with pytest.raises(ConfigError):
        kafka_config.parse_options("oops")


def test_settings_read_the_group_and_options_from_the_environment():
    s = Settings.from_env({"KUBEPREDICT_CONNECTOR_GROUP": "g2", "KUBEPREDICT_KAFKA_OPTIONS": "a=b"})
    assert s.connector_group == "g2" and s.kafka_options == "a=b"
    assert Settings.from_env({}).connector_group == "kubepredict-connector"


# ---- relay bookkeeping ----------------------------------------------------------------------------
Row = namedtuple("Row", "seq event_id type key payload")


def test_sendable_stops_a_key_at_its_first_undelivered_event():
    rows = [
        Row(1, "a", "t", "job_a", ""),
        Row(2, "b", "t", "job_b", ""),
        Row(3, "c", "t", "job_a", ""),
        Row(4, "d", "t", "job_b", ""),
    ]
    assert sendable(rows, {1, 2, 4}) == [1, 2, 4]
    assert sendable(rows, {2, 3, 4}) == [2, 4]


class FakeProducer:
    """Acknowledges (or fails) every message at the next poll."""

    def __init__(self, fail_keys=()):
        self.sent, self.queue, self.fail_keys = [], [], set(fail_keys)

    def produce(self, topic, value, key, headers, on_delivery):
        self.queue.append((topic, value, key, headers, on_delivery))

    def poll(self, timeout):
        for topic, value, key, headers, cb in self.queue:
            if key and key.decode() in self.fail_keys:
                cb("_MSG_TIMED_OUT", None)
            else:
                self.sent.append((topic, value, key, headers))
                cb(None, None)
        self.queue.clear()

    def flush(self, timeout=None):
        self.poll(0)
        return 0


@pytest.fixture
def catalog(tmp_path):
    c = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    yield c
    c.dispose()


def emit(catalog, kind, key):
    with catalog.tx() as conn:
        return catalog.emit(conn, kind, key, {"job_id": key})


def test_relay_publishes_structured_cloudevents_keyed_by_job_and_marks_them_sent(catalog):
    events = [
        emit(catalog, "job.queued", "job_a"),
        emit(catalog, "job.queued", "job_b"),
        emit(catalog, "job.started", "job_a"),
    ]
    fake = FakeProducer()
    relay = OutboxRelay(catalog, Settings(kafka_bootstrap_servers="x:1", topic_events="ev"), producer=fake)
    assert relay.publish_batch() == 3 and catalog.pending_count() == 0
    assert [json.loads(v)["id"] for _, v, _, _ in fake.sent] == [e["id"] for e in events]
    assert [k for _, _, k, _ in fake.sent] == [b"job_a", b"job_b", b"job_a"]
    assert all(t == "ev" and h == [("content-type", b"application/cloudevents+json")] for t, _, _, h in fake.sent)


def test_relay_keeps_unacknowledged_rows_pending(catalog):
    emit(catalog, "job.queued", "job_a")
    emit(catalog, "job.queued", "job_b")
    relay = OutboxRelay(catalog, Settings(kafka_bootstrap_servers="x:1"), producer=FakeProducer({"job_b"}))
    with pytest.raises(BackendUnavailable):
        relay.publish_batch()
    assert [r.key for r in catalog.pending_events()] == ["job_b"]


# ---- connector decisions with fakes ---------------------------------------------------------------
class FakeMessage:
    def __init__(self, value, offset=0):
        self._value, self._offset = value, offset

    def topic(self):
        return "kp.train"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def key(self):
        return None

    def value(self):
        return self._value

    def headers(self):
        return None

    def timestamp(self):
        return (1, 1_700_000_000_000)

    def error(self):
        return None


class FakeConsumer:
    def __init__(self):
        self.commits, self.seeks = [], []

    def commit(self, message, asynchronous):
        assert asynchronous is False
        self.commits.append(message.offset())

    def seek(self, tp):
        self.seeks.append(tp.offset)


def connector_with(status: int, seen: list) -> KafkaConnector:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            status, json={"error": {"code": "invalid_json", "message": "bad"}} if status >= 400 else {"job_id": "job_1"}
        )

    s = Settings(
        kafka_bootstrap_servers="x:1", topic_train_requests="kp.train", gateway_url="http://gw", api_token="tok"
    )
    c = KafkaConnector(s, http=httpx.Client(transport=httpx.MockTransport(answer)), max_backoff=0.01)
    c._producer = FakeProducer()
    return c


def test_connector_commits_after_the_function_answered():
    seen, consumer = [], FakeConsumer()
    c = connector_with(202, seen)
    assert c.handle(consumer, FakeMessage(json.dumps(BODY).encode(), 5)) == "commit"
    assert consumer.commits == [5] and not consumer.seeks
    assert str(seen[0].url) == "http://gw/function/train" and seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].headers["idempotency-key"] == "kp.train-0-5"


def test_connector_dead_letters_a_rejected_message_then_commits():
    seen, consumer = [], FakeConsumer()
    c = connector_with(400, seen)
    assert c.handle(consumer, FakeMessage(b"{nope", 3)) == "dead_letter"
    assert consumer.commits == [3] and c.dead_lettered == 1
    topic, value, _, headers = c._producer.sent[0]
    assert topic == "kubepredict.dead-letter" and value == b"{nope"
    assert dict(headers)["kubepredict.error.code"] == b"invalid_json"


def test_connector_rewinds_and_does_not_commit_on_5xx():
    seen, consumer = [], FakeConsumer()
    c = connector_with(503, seen)
    assert c.handle(consumer, FakeMessage(json.dumps(BODY).encode(), 9)) == "retry"
    assert consumer.commits == [] and consumer.seeks == [9]


# ---- hostile messages: never crash or stall the consumer, always a dead letter with a reason ------------------
DEEP = b'{"dataset_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    "value",
    [
        DEEP,  # RecursionError in json.loads
        json.dumps({"specversion": "1.0", "id": "e", "data": "[" * 100_000 + "]" * 100_000}).encode(),
        b'{"model_id": "m", "instances": [[Infinity, 1]]}',  # not JSON
        b'{"model_id": "m", "instances": [[1e999, 1]]}',
    ],
)
def test_a_deep_or_non_finite_message_is_forwarded_raw_and_dead_lettered_with_the_reason(value):
    assert not unwrap(delivery(value))[2]  # not JSON: read as strictly as the gateway reads it
    seen, consumer = [], FakeConsumer()
    c = connector_with(400, seen)
    assert c.handle(consumer, FakeMessage(value, 4)) == "dead_letter"
    assert consumer.commits == [4] and not consumer.seeks and c.dead_lettered == 1
    topic, sent, _, headers = c._producer.sent[0]
    assert topic == "kubepredict.dead-letter" and sent == value
    assert dict(headers)["kubepredict.error.code"] == b"invalid_json"


def test_error_of_survives_a_deep_answer():
    assert messages.error_of(502, DEEP)["code"] == "http_502"
