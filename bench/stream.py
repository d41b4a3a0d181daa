"""Stream scoring throughput on a real Kafka broker: rows/s with 100-row records, records/s with 1-row records.

Part of ``make bench`` (``python -m bench`` calls ``stream_rows``); alone: ``python -m bench.stream`` (trains its
own model). The records are on the topic before the scorer starts, so the figure is the scorer's (one member,
in this process): consume, decode, score per model per micro-batch, produce the answers, commit the transaction.
``BENCH_STREAM_BIG`` (100-row records, default 1000) and ``BENCH_STREAM_SMALL`` (1-row records, default 10000).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

BIG = int(os.environ.get("BENCH_STREAM_BIG", "1000"))
SMALL = int(os.environ.get("BENCH_STREAM_SMALL", "10000"))


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "log_level": 3,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for v in values:
        p.produce(topic, v)
        p.poll(0)
    assert p.flush(120) == 0


def _records(model_id: str, rows: list[dict], per_record: int, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        chunk = [rows[(i * per_record + j) % len(rows)] for j in range(per_record)]
        out.append(
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": f"req-{i}",
                    "source": "/bench",
                    "type": "bench.score",
                    "data": {"model": model_id, "instances": chunk},
                }
            ).encode()
        )
    return out


def _run(services, bootstrap: str, model_id: str, rows: list[dict], per_record: int, n: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    from kubepredict.events.stream import StreamScorer

    tag = uuid.uuid4().hex[:6]
    settings = replace(
        services.settings,
        kafka_bootstrap_servers=bootstrap,
        topic_predict_stream=f"bench.{tag}.stream",
        topic_predictions=f"bench.{tag}.predictions",
        topic_dead_letter=f"bench.{tag}.dead-letter",
    )
    svc = replace(services, settings=settings)  # same catalogue, store and model cache
    _produce(bootstrap, settings.topic_predict_stream, _records(model_id, rows, per_record, n))
    scorer = StreamScorer(svc, group_id=f"bench-{tag}", instance="bench")
    scorer.process = _timed(scorer.process, first := [])
    scorer.start()
    try:
        deadline = time.monotonic() + 600
        while scorer.answered + scorer.dead_lettered < n and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - first[0]
    finally:
        scorer.stop()
    assert scorer.answered == n and scorer.dead_lettered == 0, (scorer.answered, scorer.dead_lettered)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-check-{tag}"})
    _, high = c.get_watermark_offsets(TopicPartition(settings.topic_predictions, 0), timeout=10)
    c.close()
    assert high >= n, f"{high} offsets on the answers topic, expected at least {n}"
    return {
        "records": n,
        "rows": n * per_record,
        "seconds": round(elapsed, 3),
        "batches": scorer.batches,
        "records_per_s": round(n / elapsed, 1),
        "rows_per_s": round(n * per_record / elapsed, 1),
    }


def _timed(process, first: list):
    """Start the clock when the first micro-batch arrives (not while the consumer joins its group)."""

    def wrapped(*args, **kwargs):
        if not first:
            first.append(time.perf_counter())
        return process(*args, **kwargs)

    return wrapped


def stream_rows(data_dir: Path, model_id: str, rows: list[dict]) -> tuple[list[tuple[str, str, str]], dict]:
    """Table rows and figures for ``make bench``; starts (and stops) its own broker.

    ``data_dir``: the data folder of a gateway on the default (SQLite + folder) backend that has ``model_id``.
    """
    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from tests.services import ServiceUnavailable
    from tests.services.kafka import KafkaBroker

    try:
        broker = KafkaBroker().start()
    except ServiceUnavailable as exc:
        return [("stream scoring over Kafka", "not run", f"needs the Kafka jars: {exc}")], {}
    services = bootstrap(Settings.from_env(data_dir=Path(data_dir)))
    try:
        big = _run(services, broker.bootstrap, model_id, rows, 100, BIG)
        small = _run(services, broker.bootstrap, model_id, rows, 1, SMALL)
    finally:
        services.catalog.dispose()
        broker.stop()
    return [
        (
            f"stream scoring over Kafka, {BIG} records of 100 rows",
            f"{big['rows_per_s']:,.0f} rows/s",
            f"{big['records_per_s']:,.0f} records/s, {big['batches']} transactions, one scorer",
        ),
        (
            f"stream scoring over Kafka, {SMALL:,} records of 1 row",
            f"{small['records_per_s']:,.0f} records/s",
            f"{small['seconds']:.2f} s, {small['batches']} transactions, one scorer",
        ),
    ], {"stream_100_rows": big, "stream_1_row": small}


def main() -> None:
    import httpx

    from bench.__main__ import iris_frame
    from bench.jobs import train_iris
    from tests.gateway_process import GatewayProcess

    iris = iris_frame()
    with (
        tempfile.TemporaryDirectory() as tmp,
        GatewayProcess(Path(tmp), env={"KUBEPREDICT_LOG_LEVEL": "WARNING"}) as gw,
    ):
        http = httpx.Client(base_url=gw.url, timeout=600)
        q, job = train_iris(http, iris)
        if job["status"] != "succeeded":
            sys.exit("training failed")
        out, _ = stream_rows(Path(tmp), q["model_id"], iris.drop(columns=["species"]).to_dict(orient="records"))
    for row in out:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
