"""librdkafka settings for the relay and the connector, topic creation, and Kafka error translation."""

from __future__ import annotations

import logging

from ..errors import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)

# librdkafka error codes that mean "the broker cannot be reached" (transient, not a bug).
UNREACHABLE = {"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_TIMED_OUT", "_MSG_TIMED_OUT", "_NO_OFFSET"}


def parse_options(raw: str | None) -> dict[str, str]:
    """Turn ``KUBEPREDICT_KAFKA_OPTIONS`` (``k=v,k=v``) into librdkafka properties."""
    options: dict[str, str] = {}
    for item in (raw or "").replace("\n", ",").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"KUBEPREDICT_KAFKA_OPTIONS: expected key=value, got {item.strip()!r}")
        options[key.strip()] = value.strip()
    return options


def _base(settings) -> dict:
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS is not set")
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": "kubepredict",
        # the loops report outages themselves, once per outage; librdkafka's own log would repeat every retry
        "log_level": 2,
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 2000,
        "topic.metadata.refresh.interval.ms": 10000,
    }


def producer_config(settings, **overrides) -> dict:
    """Idempotent producer: acks=all, ordered per partition, Java-compatible key hashing."""
    conf = _base(settings)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,
            "partitioner": "murmur2_random",  # same partition for a key as the Java clients choose
            "linger.ms": 5,
            "compression.type": "lz4",
            # retry until acknowledged: a message that timed out while a later one of its key got through would
            # reorder that key; the relay keeps one batch in flight, so the backlog waits in the outbox, not here
            "message.timeout.ms": 0,
        }
    )
    conf.update(parse_options(settings.kafka_options))
    conf.update(overrides)
    return conf


def consumer_config(settings, group_id: str, **overrides) -> dict:
    """Consumer group member that commits by hand, after the function answered."""
    conf = _base(settings)
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # requests sent before the first connector started still count
            "allow.auto.create.topics": True,
            "max.poll.interval.ms": 300000,
        }
    )
    conf.update(parse_options(settings.kafka_options))
    conf.update(overrides)
    return conf


def ensure_topics(settings, topics: list[str], timeout: float = 10.0) -> None:
    """Create missing topics (best effort: a broker that auto-creates or an operator may do it instead)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(
        {k: v for k, v in _base(settings).items() if k != "topic.metadata.refresh.interval.ms"}
        | parse_options(settings.kafka_options)
    )
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=-1, replication_factor=-1) for t in topics],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    for topic, fut in futures.items():
        try:
            fut.result(timeout=timeout + 5)
            logger.info("created topic %s", topic)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "name", lambda: "")() != "TOPIC_ALREADY_EXISTS":
                logger.warning("could not create topic %s (%s); relying on auto-creation", topic, err)
        except Exception as exc:  # noqa: BLE001 - e.g. concurrent.futures.TimeoutError while the broker is down
            logger.warning("could not create topic %s (%s); relying on auto-creation", topic, exc)


def unavailable(exc: BaseException, what: str) -> BackendUnavailable:
    """A Kafka error as the package's BackendUnavailable (raise it ``from exc``)."""
    err = exc.args[0] if getattr(exc, "args", None) else exc
    return BackendUnavailable(f"Kafka {what} failed: {err}", details={"kafka_error": str(err)})


def error_name(err) -> str:
    """The librdkafka error name of a KafkaError (``_ALL_BROKERS_DOWN``, ``UNKNOWN_TOPIC_OR_PART``…)."""
    try:
        return err.name()
    except Exception:  # noqa: BLE001 - not a KafkaError
        return str(err)
