"""Stream scoring: request records on ``kubepredict.predict.stream`` scored in micro-batches, in process.

Each micro-batch (up to ``max_messages`` records or ``max_wait`` seconds) is one Kafka transaction: the
answers (to ``kubepredict.predictions``, keyed by request id), the dead letters and the consumed offsets
commit together or not at all. A scorer killed before the commit leaves an aborted transaction that
``read_committed`` consumers never see; the records are read again and answered once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import metrics
from ..errors import BackendUnavailable, KubepredictError
from ..loops import BackgroundLoop
from ..services import serving
from . import stream_batch as sb
from .kafka_config import UNREACHABLE, consumer_config, ensure_topics, error_name, producer_config, unavailable
from .messages import Delivery, dead_letter_headers

if TYPE_CHECKING:
    from confluent_kafka import Consumer

logger = logging.getLogger(__name__)
FUNCTION = "predict-stream"  # the kubepredict.function header of its dead letters


def default_instance() -> str:
    return socket.gethostname() or "local"


class StreamScorer(BackgroundLoop):
    """One consumer-group member; run more (same group, distinct ``instance``) to share the partitions."""

    name = "stream-scorer"
    thread_name = "kafka-stream-scorer"

    def __init__(
        self,
        svc,
        *,
        group_id: str | None = None,
        instance: str | None = None,
        max_messages: int = 500,
        max_wait: float = 0.05,
        transaction_timeout_ms: int = 30000,
        after_produce: Callable[[list], None] | None = None,
        max_backoff: float = 30.0,
        stuck_after: float = 120.0,
    ):
        super().__init__()
        self.svc = svc
        self.settings = settings = svc.settings
        self.group_id = group_id or settings.stream_group
        # Stable across restarts of the same instance: a restart aborts the transaction its crash left open.
        self.transactional_id = f"{self.group_id}-{instance or default_instance()}"
        self.max_messages, self.max_wait = max_messages, max_wait
        self.transaction_timeout_ms = transaction_timeout_ms
        self.after_produce, self.max_backoff = after_produce, max_backoff
        # watchdog: a transactional call blocked longer than ``stuck_after`` s (librdkafka can miss its own timeout
        # when the group coordinator restarts, confluentinc/librdkafka#5456) gets the loop replaced by a new one
        self.stuck_after = stuck_after
        self._generation = 0
        self._busy_since: float | None = None
        self._consumer: Consumer | None = None
        self.restarts = 0
        self._backoff = 0.0
        self._outage = False
        self.batches = self.answered = self.dead_lettered = 0
        self.failed: BaseException | None = None

    # ---- the loop -------------------------------------------------------------------------
    def run(self, generation: int = 0) -> None:
        from confluent_kafka import Consumer, KafkaException, Producer

        s = self.settings
        ensure_topics(s, [s.topic_predict_stream, s.topic_predictions, s.topic_dead_letter])
        try:
            consumer = Consumer(
                consumer_config(s, self.group_id, error_cb=self._on_error, **{"isolation.level": "read_committed"})
            )
            consumer.subscribe([s.topic_predict_stream])
            self._consumer = consumer
            producer = Producer(
                producer_config(
                    s,
                    error_cb=self._on_error,
                    **{
                        "transactional.id": self.transactional_id,
                        "transaction.timeout.ms": self.transaction_timeout_ms,
                        "message.timeout.ms": self.transaction_timeout_ms,
                        "linger.ms": 2,
                        # the next transaction's AddOffsetsToTxn meets CONCURRENT_TRANSACTIONS while the broker still
                        # writes the last one's markers; retrying after 100 ms (the default) cost 80 ms per batch,
                        # after 10 ms it costs 19 ms (measured on the test broker)
                        "retry.backoff.ms": 10,
                    },
                )
            )
        except KafkaException as exc:
            raise unavailable(exc, "stream scorer set-up") from exc
        try:
            if not self._init_transactions(producer):
                return
            logger.info(
                "stream scorer (group %s, transactional id %s): %s -> %s",
                self.group_id,
                self.transactional_id,
                s.topic_predict_stream,
                s.topic_predictions,
            )
            while not self._stop.is_set() and generation == self._generation:
                msgs = consumer.consume(self.max_messages, self.max_wait if self.max_wait > 0 else 0.001)
                deliveries = []
                for m in msgs:
                    if m.error():
                        self._on_error(m.error())
                    else:
                        deliveries.append(Delivery.from_message(m))
                if not deliveries:
                    continue
                self._up()
                try:
                    self.process(consumer, producer, deliveries, generation)
                    self._backoff = 0.0
                except _Fatal:
                    raise
                except _Replaced:
                    return
                except Exception as exc:  # never lose the loop; the batch is read again
                    if generation != self._generation:
                        return  # replaced by the watchdog while blocked: the new loop owns the batch
                    if isinstance(exc, BackendUnavailable):
                        logger.warning("stream scorer: %s; the batch of %d will be retried", exc, len(deliveries))
                    else:
                        logger.exception("stream scorer: a batch of %d failed; retrying it", len(deliveries))
                    self._abort(producer, generation)
                    self._rewind(consumer, deliveries)
                    self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
                    self._stop.wait(self._backoff)
        finally:
            if generation == self._generation:  # else the watchdog closed it already
                consumer.close()

    def process(self, consumer, producer, deliveries: list[Delivery], generation: int = 0) -> None:
        """Score a micro-batch and publish answers, dead letters and offsets in one transaction."""
        from confluent_kafka import KafkaException, TopicPartition

        started = time.perf_counter()
        s = self.settings
        records = sb.first_of_each(sb.parse(d) for d in deliveries)
        limit = s.max_online_rows
        for g in sb.group(records, lambda ref, v: serving.resolve(self.svc, ref, v), limit):
            for chunk in sb.chunks(g.records, limit):
                sb.score_group(chunk, g.model, lambda m, t: serving.score(self.svc, m, t))
        offsets: dict[tuple[str, int], int] = {}
        for d in deliveries:
            offsets[(d.topic, d.partition)] = max(offsets.get((d.topic, d.partition), -1), d.offset + 1)
        duplicates = len(deliveries) - len(records)
        answered = dead = 0
        when = sb.now()
        self._busy_since = time.monotonic()
        try:
            producer.begin_transaction()
            for rec in records:
                if rec.answer is not None:
                    producer.produce(
                        s.topic_predictions,
                        value=sb.answer_event(rec, when),
                        key=rec.request_id.encode(),
                        headers=[("content-type", b"application/cloudevents+json")],
                    )
                    answered += 1
                else:
                    self._dead_letter(producer, rec)
                    dead += 1
                producer.poll(0)
            if self.after_produce is not None:
                producer.flush(30)
                self.after_produce(records)
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()], consumer.consumer_group_metadata(), 30
            )
            if generation != self._generation:
                raise _Replaced()  # the watchdog gave up on this loop: its successor scores the batch again
            _commit(producer)
        except KafkaException as exc:
            if generation != self._generation:
                raise _Replaced() from exc  # fenced by its successor, as intended
            err = exc.args[0] if exc.args else None
            if err is not None and getattr(err, "fatal", lambda: False)():
                raise _Fatal(str(err)) from exc
            raise unavailable(exc, "stream transaction") from exc
        except BufferError as exc:
            raise BackendUnavailable(f"Kafka producer queue full: {exc}") from exc
        finally:
            if generation == self._generation:
                self._busy_since = None
        self.batches += 1
        self.answered += answered
        self.dead_lettered += dead
        metrics.STREAM_RECORDS.labels("answered").inc(answered)
        metrics.STREAM_RECORDS.labels("dead_lettered").inc(dead)
        metrics.STREAM_RECORDS.labels("duplicate").inc(duplicates)
        metrics.STREAM_ROWS.inc(sum(r.table.n_rows for r in records if r.answer is not None and r.table is not None))
        metrics.STREAM_BATCH_RECORDS.observe(len(records))
        metrics.STREAM_BATCH_SECONDS.observe(time.perf_counter() - started)

    # ---- pieces ---------------------------------------------------------------------------
    def _init_transactions(self, producer) -> bool:
        """Register the transactional id (aborting what a crashed predecessor left open); waits out an outage."""
        from confluent_kafka import KafkaException

        backoff = 0.5
        while not self._stop.is_set():
            try:
                producer.init_transactions(5)
                self._up()
                return True
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is not None and err.fatal():
                    raise _Fatal(str(err)) from exc
                if not self._outage:
                    self._outage = True
                    logger.warning(
                        "stream scorer: cannot start transactions at %s (%s); waiting for the broker",
                        self.settings.kafka_bootstrap_servers,
                        err,
                    )
            self._stop.wait(backoff)
            backoff = min(self.max_backoff, backoff * 2)
        return False

    def _dead_letter(self, producer, rec: sb.Record) -> None:
        exc = rec.error or KubepredictError("not answered", code="internal_error")
        status = sb.error_status(exc)
        logger.warning(
            "stream scorer: %s[%s]@%s (request %s) rejected with %s %s: %s; sent to %s",
            rec.delivery.topic,
            rec.delivery.partition,
            rec.delivery.offset,
            rec.request_id,
            status,
            exc.code,
            exc.message,
            self.settings.topic_dead_letter,
        )
        d = rec.delivery
        producer.produce(
            self.settings.topic_dead_letter,
            value=d.value,
            key=d.key,
            headers=dead_letter_headers(d, FUNCTION, status, {"code": exc.code, "message": exc.message}),
        )

    def _abort(self, producer, generation: int = 0) -> None:
        from confluent_kafka import KafkaException

        self._busy_since = time.monotonic()
        try:
            producer.abort_transaction(30)
        except KafkaException as exc:  # no transaction open, or the broker is away: the next begin tells
            logger.debug("stream scorer: abort: %s", exc)
        finally:
            if generation == self._generation:
                self._busy_since = None
        if generation != self._generation:
            raise _Replaced()

    def _rewind(self, consumer, deliveries: list[Delivery]) -> None:
        """Seek each partition of the batch back to its first record: nothing is skipped."""
        from confluent_kafka import KafkaException, TopicPartition

        first: dict[tuple[str, int], int] = {}
        for d in deliveries:
            first[(d.topic, d.partition)] = min(first.get((d.topic, d.partition), d.offset), d.offset)
        for (topic, partition), offset in first.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # revoked meanwhile: its next owner reads from the committed offset
                logger.info("stream scorer: could not rewind %s[%s] (%s)", topic, partition, exc)

    def _on_error(self, err) -> None:
        name = error_name(err)
        if name in UNREACHABLE:
            if not self._outage:
                self._outage = True
                logger.warning(
                    "stream scorer: Kafka unreachable at %s (%s); waiting for it",
                    self.settings.kafka_bootstrap_servers,
                    err,
                )
        elif name != "UNKNOWN_TOPIC_OR_PART":
            logger.warning("stream scorer: Kafka error %s", err)

    def _up(self) -> None:
        if self._outage:
            self._outage = False
            logger.info("stream scorer: Kafka reachable again")

    def start(self) -> StreamScorer:
        super().start()  # generation 0
        threading.Thread(target=self._watch, name="kafka-stream-watchdog", daemon=True).start()
        return self

    def _watch(self) -> None:
        """Replace a loop stuck inside a transactional call: close its consumer (its partitions go to the new
        loop), start a new loop whose producer, with the same transactional id, fences the stuck one."""
        while not self._stop.wait(1.0):
            since = self._busy_since
            if since is None or time.monotonic() - since < self.stuck_after:
                continue
            logger.error(
                "stream scorer: a Kafka transaction call has been blocked for %.0f s; replacing the loop "
                "(its uncommitted batch is scored again by the new one)",
                time.monotonic() - since,
            )
            self._replace()

    def _replace(self) -> None:
        self._generation += 1
        self._busy_since = None
        self.restarts += 1
        try:
            if self._consumer is not None:
                self._consumer.close()  # leaves the group now: the stuck thread holds no lock on it
        except Exception:  # already closed
            logger.debug("stream scorer: closing the old consumer", exc_info=True)
        self._thread = threading.Thread(
            target=self._run_logged, args=(self._generation,), name=self.thread_name, daemon=True
        )
        self._thread.start()

    def _run_logged(self, generation: int = 0) -> None:
        try:
            self.run(generation)
        except _Replaced:
            pass
        except _Fatal as exc:
            # e.g. fenced by another scorer with the same transactional id (give each its own --instance), or a
            # producer epoch the broker no longer accepts: start over with new clients after a pause
            logger.error("stream scorer: fatal Kafka producer error (%s); new clients in 10 s", exc)
            if not self._stop.wait(10):
                self._replace()
        except Exception as exc:  # a thread's exception would otherwise vanish
            self.failed = exc
            logger.exception("stream scorer stopped")

    def stop(self, timeout: float = 15.0) -> None:
        """Finish the batch in hand, then leave the group; uncommitted records go to the next member."""
        super().stop(timeout)


def _commit(producer, attempts: int = 3) -> None:
    """Commit the transaction; a retriable error (e.g. a timeout) is retried, since it may have gone through."""
    from confluent_kafka import KafkaException

    for attempt in range(attempts):
        try:
            producer.commit_transaction(60)
            return
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if attempt + 1 == attempts or err is None or not err.retriable():
                raise


class _Replaced(Exception):
    """This loop was replaced by the watchdog while blocked; it must not commit anything."""


class _Fatal(Exception):
    """The producer was fenced by another instance with the same transactional id, or hit a fatal error."""
