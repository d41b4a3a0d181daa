"""The Kafka connector: consumes the request topics, invokes train/predict through the gateway, then commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable
from ..loops import BackgroundLoop
from .kafka_config import UNREACHABLE, consumer_config, ensure_topics, error_name, producer_config, unavailable
from .messages import COMMIT, DEAD_LETTER, Delivery, Invocation, build_invocation, dead_letter_headers, decide, error_of

if TYPE_CHECKING:
    from confluent_kafka import Producer

logger = logging.getLogger(__name__)


class KafkaConnector(BackgroundLoop):
    """One consumer-group member; run more (same group) to scale, up to one per partition."""

    name = "connector"
    thread_name = "kafka-connector"

    def __init__(
        self,
        settings,
        *,
        gateway_url: str | None = None,
        group_id: str | None = None,
        http=None,
        after_invoke: Callable[[Delivery, int | None], None] | None = None,
        max_backoff: float = 30.0,
        invoke_timeout: float = 120.0,
    ):
        super().__init__()
        self.settings = settings
        self.gateway_url = (gateway_url or settings.gateway_url).rstrip("/")
        self.group_id = group_id or settings.connector_group
        self.routes = {settings.topic_train_requests: "train", settings.topic_predict_requests: "predict"}
        self.after_invoke, self.max_backoff, self.invoke_timeout = after_invoke, max_backoff, invoke_timeout
        self._http = http
        self._producer: Producer | None = None
        self._outage, self._outage_since = False, 0.0
        self._backoff = 0.0
        self.invoked = self.committed = self.dead_lettered = 0

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Consume until stopped; each message is committed only once the function has answered."""
        from confluent_kafka import Consumer, KafkaException

        ensure_topics(self.settings, [*self.routes, self.settings.topic_dead_letter])
        try:
            consumer = Consumer(consumer_config(self.settings, self.group_id, error_cb=self._on_error))
            consumer.subscribe(list(self.routes))
        except KafkaException as exc:
            raise unavailable(exc, "consumer set-up") from exc
        logger.info(
            "connector (group %s) invoking %s for topics %s",
            self.group_id,
            self.gateway_url,
            ", ".join(f"{t} -> {f}" for t, f in self.routes.items()),
        )
        try:
            while not self._stop.is_set():
                msg = consumer.poll(1.0)
                if msg is None:
                    if self._outage and time.monotonic() - self._outage_since > 5:
                        self._probe(consumer)
                    continue
                if msg.error():
                    self._on_error(msg.error())
                    continue
                self._up()
                try:
                    self.handle(consumer, msg)
                except BackendUnavailable as exc:
                    logger.warning(
                        "connector: %s; %s[%s]@%s will be retried", exc, msg.topic(), msg.partition(), msg.offset()
                    )
                    self._retry_later(consumer, msg)
                except Exception:  # never lose the loop; the message is re-read (not committed)
                    logger.exception("connector: handling %s[%s]@%s failed", msg.topic(), msg.partition(), msg.offset())
                    self._retry_later(consumer, msg)
        finally:
            consumer.close()
            if self._producer is not None:
                self._producer.flush(5)
            if self._http is not None:
                self._http.close()

    def handle(self, consumer, msg) -> str:
        """Invoke the function for one message, then commit, dead-letter-and-commit, or seek back to retry."""
        delivery = Delivery.from_message(msg)
        function = self.routes[delivery.topic]
        inv = build_invocation(delivery, function, self.settings.api_token)
        status, body = self.invoke(inv)
        self.invoked += 1
        if self.after_invoke:
            self.after_invoke(delivery, status)
        action = decide(status)
        if action == DEAD_LETTER:
            error = error_of(status, body)
            logger.warning(
                "connector: %s rejected %s[%s]@%s with %s %s; sent to %s",
                function,
                delivery.topic,
                delivery.partition,
                delivery.offset,
                status,
                error["code"],
                self.settings.topic_dead_letter,
            )
            self.dead_letter(delivery, function, status, error)
        elif action != COMMIT:
            logger.warning(
                "connector: %s answered %s for %s[%s]@%s (key %s); retrying",
                function,
                status if status is not None else "nothing",
                delivery.topic,
                delivery.partition,
                delivery.offset,
                inv.idempotency_key,
            )
            self._retry_later(consumer, msg)
            return action
        self._commit(consumer, msg)
        self._backoff = 0.0
        return action

    # ---- pieces ---------------------------------------------------------------------------
    def http(self):
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=httpx.Timeout(self.invoke_timeout, connect=5.0))
        return self._http

    def invoke(self, inv: Invocation) -> tuple[int | None, bytes]:
        """POST to the gateway; ``(None, reason)`` when it could not be reached or timed out."""
        import httpx

        try:
            r = self.http().post(f"{self.gateway_url}/function/{inv.function}", content=inv.body, headers=inv.headers)
            return r.status_code, r.content
        except httpx.HTTPError as exc:
            return None, str(exc).encode()

    def dead_letter(self, delivery: Delivery, function: str, status: int | None, error: dict) -> None:
        """Publish the original message with the error headers; raises BackendUnavailable if not acknowledged."""
        from confluent_kafka import KafkaException, Producer

        if self._producer is None:
            self._producer = Producer(producer_config(self.settings))
        outcome: list = []
        try:
            self._producer.produce(
                self.settings.topic_dead_letter,
                value=delivery.value,
                key=delivery.key,
                headers=dead_letter_headers(delivery, function, status, error),
                on_delivery=lambda err, _msg: outcome.append(err),
            )
            self._producer.flush(30)
        except (KafkaException, BufferError) as exc:
            raise unavailable(exc, "dead-letter publish") from exc
        if not outcome or outcome[0] is not None:
            raise BackendUnavailable(f"dead-letter publish not acknowledged: {outcome[0] if outcome else 'timeout'}")
        self.dead_lettered += 1

    def _commit(self, consumer, msg) -> None:
        from confluent_kafka import KafkaException

        try:
            consumer.commit(message=msg, asynchronous=False)
            self.committed += 1
        except KafkaException as exc:
            # the function has answered: a re-delivery is answered from the idempotency key, no second job
            logger.warning(
                "connector: commit of %s[%s]@%s failed (%s); it may be delivered again",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc.args[0] if exc.args else exc,
            )

    def _retry_later(self, consumer, msg) -> None:
        """Rewind the partition to this message and wait a growing backoff (the message is never skipped)."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        except KafkaException as exc:  # partition revoked meanwhile: its next owner reads it again
            logger.info("connector: could not rewind %s[%s] (%s)", msg.topic(), msg.partition(), exc)
        self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        self._stop.wait(self._backoff)

    def _on_error(self, err) -> None:
        name = error_name(err)
        if name in UNREACHABLE:
            self._outage_since = time.monotonic()
            if not self._outage:
                self._outage = True
                logger.warning(
                    "connector: Kafka unreachable at %s (%s); waiting for it",
                    self.settings.kafka_bootstrap_servers,
                    err,
                )
        elif name == "UNKNOWN_TOPIC_OR_PART":
            logger.info("connector: %s", err)
        else:
            logger.warning("connector: Kafka error %s", err)

    def _probe(self, consumer) -> None:
        """During an outage with nothing to read, ask the broker for metadata to notice it is back."""
        from confluent_kafka import KafkaException

        try:
            consumer.list_topics(timeout=1.0)
        except KafkaException:
            return
        self._up()

    def _up(self) -> None:
        if self._outage:
            self._outage = False
            logger.info("connector: Kafka reachable again")

    def stop(self, timeout: float = 15.0) -> None:
        """Leave the group cleanly; an uncommitted message is re-delivered to the next member."""
        super().stop(timeout)
