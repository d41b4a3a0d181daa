"""The outbox relay: publishes unsent outbox rows to the events topic, in commit order, and marks them sent."""

from __future__ import annotations

import logging
import time

from ..errors import BackendUnavailable
from ..loops import BackgroundLoop
from .kafka_config import UNREACHABLE, ensure_topics, error_name, producer_config, unavailable

logger = logging.getLogger(__name__)

HEADERS = [("content-type", b"application/cloudevents+json")]
STANDBY_SECONDS = 5.0


def sendable(rows: list, delivered: set[int]) -> list[int]:
    """Seqs to mark sent: per key, the delivered rows before that key's first undelivered one.

    A later event of a key is only marked when every earlier one of the same key made it, so a retry
    re-publishes the key's events in their order (consumers drop the repeats by CloudEvent id).
    """
    blocked: set[str] = set()
    out = []
    for row in rows:
        if row.key in blocked:
            continue
        if row.seq in delivered:
            out.append(row.seq)
        else:
            blocked.add(row.key)
    return out


class OutboxRelay(BackgroundLoop):
    """Polls the outbox; one batch in flight at a time; backs off while the broker is away."""

    name = "relay"
    thread_name = "outbox-relay"

    def __init__(
        self,
        catalog,
        settings,
        *,
        producer=None,
        batch: int = 500,
        idle_seconds: float = 0.2,
        max_backoff: float = 30.0,
    ):
        super().__init__()
        self.catalog, self.settings = catalog, settings
        self.topic = settings.topic_events
        self.batch, self.idle_seconds, self.max_backoff = batch, idle_seconds, max_backoff
        self._producer = producer
        self._outage = False
        self._standby_logged = False
        self.published = 0

    # ---- producer -------------------------------------------------------------------------
    def _on_error(self, err) -> None:
        if err.fatal():
            logger.error("Kafka producer fatal error (%s); starting a new producer", err)
            self._producer = None
        elif error_name(err) in UNREACHABLE:
            self._down(str(err))
        else:
            logger.warning("Kafka producer error: %s", err)

    def _down(self, why: str) -> None:
        if not self._outage:
            self._outage = True
            pending = self._pending_or_none()
            logger.warning(
                "Kafka unreachable at %s (%s); events stay in the outbox (%s pending) until it returns",
                self.settings.kafka_bootstrap_servers,
                why,
                pending,
            )

    def _up(self) -> None:
        if self._outage:
            self._outage = False
            logger.info("Kafka reachable again; publishing the outbox backlog (%s pending)", self._pending_or_none())

    def _pending_or_none(self):
        try:
            return self.catalog.pending_count()
        except Exception:  # noqa: BLE001 - only for a log line
            return "?"

    def producer(self):
        """The idempotent producer, built on first use (and again after a fatal error)."""
        if self._producer is None:
            from confluent_kafka import KafkaException, Producer

            try:
                self._producer = Producer(producer_config(self.settings, error_cb=self._on_error))
            except KafkaException as exc:
                raise unavailable(exc, "producer set-up") from exc
        return self._producer

    # ---- one round ------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish one batch of pending rows; returns how many were marked sent.

        Raises:
            BackendUnavailable: the broker did not acknowledge every row (they stay pending).
        """
        rows = self.catalog.pending_events(self.batch)
        if not rows:
            return 0
        producer = self.producer()
        delivered: set[int] = set()
        failures: list = []

        def report(seq):
            def on_delivery(err, msg):
                if err is None:
                    delivered.add(seq)
                else:
                    failures.append(err)

            return on_delivery

        from confluent_kafka import KafkaException

        try:
            for row in rows:
                self._produce(producer, row, report(row.seq))
            # every message gets exactly one report (librdkafka retries until acknowledged or a fatal error)
            while len(delivered) + len(failures) < len(rows) and self._producer is producer and not self._stop.is_set():
                producer.poll(0.5)
        except KafkaException as exc:
            raise unavailable(exc, "publish") from exc
        done = sendable(rows, delivered)
        self.catalog.mark_sent(done)
        self.published += len(done)
        if delivered:
            self._up()
        if len(done) < len(rows) and not self._stop.is_set():
            why = str(failures[0]) if failures else "producer restarted"
            self._down(why)
            raise BackendUnavailable(f"{len(rows) - len(done)} events not acknowledged by Kafka: {why}")
        return len(done)

    def _produce(self, producer, row, on_delivery) -> None:
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=row.payload.encode(),
                    key=row.key.encode() if row.key else None,
                    headers=HEADERS,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.5)

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Publish until stopped: at once while there is a backlog, every ``idle_seconds`` otherwise."""
        logger.info("outbox relay publishing to %s on %s", self.topic, self.settings.kafka_bootstrap_servers)
        ensure_topics(self.settings, [self.topic])
        backoff = 0.0
        lease = None
        while not self._stop.is_set():
            if lease is None:
                # One active relay per catalogue: the others stand by (duplicates would be harmless, but noisy).
                lease = self._take_lease()
                if lease is None:
                    self._stop.wait(STANDBY_SECONDS)
                    continue
            try:
                sent = self.publish_batch()
                backoff = 0.0
                if sent < self.batch:
                    self._stop.wait(self.idle_seconds)
            except BackendUnavailable as exc:
                backoff = min(self.max_backoff, max(0.5, backoff * 2))
                logger.debug("relay round failed (%s); next try in %.1f s", exc, backoff)
                self._stop.wait(backoff)
            except Exception:  # a bug or a database blip must not end the loop
                logger.exception("relay round failed")
                self._stop.wait(self.max_backoff / 6)
        if lease is not None:
            lease.release()
        self.close()

    def _take_lease(self):
        try:
            lease = self.catalog.singleton("outbox-relay")
        except Exception:  # database away: try again later
            logger.warning("relay could not reach the catalogue to take its lease", exc_info=True)
            return None
        if lease is None and not self._standby_logged:
            logger.info("another relay is publishing this catalogue's outbox; standing by")
            self._standby_logged = True
        return lease

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the loop to finish its batch and stop; unacknowledged rows stay pending for the next start."""
        super().stop(timeout)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(5)

    def drain(self, timeout: float = 60.0) -> int:
        """Publish until the outbox is empty (tests and benchmarks); returns the rows marked sent."""
        deadline, total = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            n = self.publish_batch()
            total += n
            if n == 0 and self.catalog.pending_count() == 0:
                return total
        raise BackendUnavailable(f"outbox not drained in {timeout:.0f} s")
