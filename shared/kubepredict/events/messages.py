"""Pure logic of the connector: request messages in, function invocations and dead letters out (no Kafka, no I/O)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

CONNECTOR = "kubepredict-connector"
NAMESPACE = "kafkatriggers.kubeless.io"  # what Kubeless' KafkaTrigger sends as event-namespace
COMMIT, RETRY, DEAD_LETTER = "commit", "retry", "dead_letter"
# 4xx answers that say "not now" or "not you" rather than "bad message": retried, never dead-lettered
RETRY_4XX = {401, 403, 408, 425, 429}
_HEADER_NAME = re.compile(r"[^A-Za-z0-9-]+")


@dataclass(frozen=True)
class Delivery:
    """One consumed message, reduced to plain values."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def from_message(cls, msg) -> Delivery:
        """From a confluent-kafka ``Message``."""
        kind, ts = msg.timestamp()
        return cls(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.key(),
            msg.value(),
            tuple((k, v or b"") for k, v in (msg.headers() or [])),
            ts if kind else None,
        )

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v.decode("utf-8", "replace")
        return None


@dataclass(frozen=True)
class Invocation:
    """One POST to ``/function/<function>`` through the gateway."""

    function: str
    body: bytes
    headers: dict[str, str]
    idempotency_key: str


def unwrap(delivery: Delivery) -> tuple[bytes, dict[str, str], bool]:
    """The request body, the CloudEvent attributes (structured or binary mode) and whether the body is JSON."""
    raw = delivery.value or b""
    doc = _json_or_none(raw)
    if isinstance(doc, dict) and "specversion" in doc:
        attrs = {k: str(doc[k]) for k in ("id", "type", "time", "source") if doc.get(k) not in (None, "")}
        if "data" in doc:
            data = doc["data"]
            if isinstance(data, str):
                return data.encode(), attrs, _is_json(data)
            return json.dumps(data, separators=(",", ":")).encode(), attrs, True
        if "data_base64" in doc:
            try:
                body = base64.b64decode(doc["data_base64"])
            except (ValueError, TypeError):
                body = b""
            return body, attrs, _is_json(body)
        return b"", attrs, False
    attrs = {
        k: v
        for k in ("id", "type", "time", "source")
        if (v := delivery.header(f"ce_{k}") or delivery.header(f"ce-{k}"))
    }
    return raw, attrs, doc is not None


_NOT_JSON = object()


def _json_or_none(raw: str | bytes, default=None):
    """``raw`` read as strictly as the gateway reads a body (no NaN/Infinity, nesting at most 1024 deep);
    ``default`` when it is not such JSON — the function it is sent to refuses it, and it is dead-lettered."""
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, UnicodeDecodeError, TypeError):
        return default


def _is_json(text: str | bytes) -> bool:
    return _json_or_none(text, _NOT_JSON) is not _NOT_JSON


def idempotency_key(delivery: Delivery, event_id: str | None) -> str:
    """The CloudEvent id, else ``topic-partition-offset`` (stable across re-deliveries)."""
    return event_id or f"{delivery.topic}-{delivery.partition}-{delivery.offset}"


def kubeless_time(timestamp_ms: int | None, now: datetime | None = None) -> str:
    """``2009-11-10 23:00:00 +0000 UTC``, Go's default time format, as Kubeless triggers send it."""
    when = datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms else (now or datetime.now(UTC))
    return when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def build_invocation(delivery: Delivery, function: str, token: str | None = None) -> Invocation:
    """The function call a message becomes, with the headers Kubeless and OpenFaaS connectors send."""
    body, attrs, is_json = unwrap(delivery)
    key = idempotency_key(delivery, attrs.get("id"))
    # train and predict take JSON: a body that is not (or not yet) JSON is still labelled so, unless the
    # message says otherwise, and the function answers why it is unusable (400 invalid_json) — the
    # embedded gateway refuses text/plain JSON with 415, as any web page could send it.
    content_type = "application/json" if is_json else (delivery.header("content-type") or "application/json")
    headers = {
        "Content-Type": content_type,
        "Idempotency-Key": key,
        "event-id": key,
        "event-type": attrs.get("type") or content_type,
        "event-time": attrs.get("time") or kubeless_time(delivery.timestamp_ms),
        "event-namespace": NAMESPACE,
        "event-topic": delivery.topic,
        "X-Topic": delivery.topic,
        "X-Kafka-Partition": str(delivery.partition),
        "X-Kafka-Offset": str(delivery.offset),
        "X-Connector": CONNECTOR,
    }
    if delivery.key is not None:
        headers["X-Kafka-Key"] = delivery.key.decode("utf-8", "replace")
    if attrs.get("source"):
        headers["ce-source"] = attrs["source"]
    for name, value in delivery.headers:
        text = value.decode("utf-8", "replace")
        hname = _HEADER_NAME.sub("-", name).strip("-")
        if hname and text.isprintable() and name.lower() not in ("content-type", "authorization"):
            headers.setdefault(f"X-Kafka-{hname}", text)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return Invocation(function, body, headers, key)


def decide(status: int | None) -> str:
    """What to do after the call: commit (answered), retry (unreachable, 5xx, 429…) or dead-letter (4xx)."""
    if status is None:
        return RETRY
    if 200 <= status < 300:
        return COMMIT
    if status >= 500 or status in RETRY_4XX:
        return RETRY
    return DEAD_LETTER


def error_of(status: int | None, body: bytes) -> dict[str, str]:
    """``{"code", "message"}`` from the API's error shape, or from whatever the answer was."""
    doc = _json_or_none(body)
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and err.get("code"):
        return {"code": str(err["code"]), "message": str(err.get("message", ""))}
    return {"code": f"http_{status}", "message": body[:500].decode("utf-8", "replace")}


def dead_letter_headers(
    delivery: Delivery, function: str, status: int | None, error: dict
) -> list[tuple[str, str | bytes | None]]:
    """The original headers plus why and where from (``kubepredict.error.*``, ``kubepredict.original.*``)."""
    extra = {
        "kubepredict.error.status": str(status if status is not None else ""),
        "kubepredict.error.code": error.get("code", ""),
        "kubepredict.error.message": error.get("message", "")[:1000],
        "kubepredict.function": function,
        "kubepredict.original.topic": delivery.topic,
        "kubepredict.original.partition": str(delivery.partition),
        "kubepredict.original.offset": str(delivery.offset),
    }
    return list(delivery.headers) + [(k, v.encode()) for k, v in extra.items()]
