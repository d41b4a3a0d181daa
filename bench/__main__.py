"""Kubepredict benchmarks against a real gateway process, compared with raw scikit-learn.

Run: ``make bench`` (``BENCH_REQUESTS`` for online calls; ``BIG=1`` adds the 10M-row batch run, see bench/batch.py;
``BENCH_SHARD_ROWS`` for the 1 vs 2 shards figure, see bench/shards.py; ``BENCH_STREAM_BIG`` /
``BENCH_STREAM_SMALL`` for the Kafka stream scoring records, see ``bench/stream.py``; ``BENCH_FC_*`` for the
forecasting run, see ``bench/forecast.py``).
Prints a table and writes ``bench/results.json``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd

from bench.jobs import job_seconds, train_iris
from tests.gateway_process import GatewayProcess

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
WARMUP = 50


def iris_frame() -> pd.DataFrame:
    from kubepredict.services.ingest import parse_csv

    path = Path(__file__).resolve().parents[1] / "shared" / "kubepredict" / "data" / "iris.csv"
    return parse_csv(io.BytesIO(path.read_bytes()))


def latency_run(base: str, body: dict, concurrency: int, n: int) -> dict:
    local = threading.local()

    def one(_):
        c = getattr(local, "c", None) or httpx.Client(base_url=base, timeout=30)
        local.c = c
        t = time.perf_counter()
        r = c.post("/function/predict", json=body)
        assert r.status_code == 200, r.text
        return time.perf_counter() - t

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(WARMUP)))
        start = time.perf_counter()
        lat = list(pool.map(one, range(n)))
        wall = time.perf_counter() - start
    lat.sort()
    return {"req_s": n / wall, "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1]}


def raw_sklearn_latency(pipeline, frame: pd.DataFrame, n: int) -> dict:
    row = frame.head(1)
    for _ in range(WARMUP):
        pipeline.predict(row)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        pipeline.predict(row)
        pipeline.predict_proba(row)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {"req_s": n / sum(lat), "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1]}


def main() -> None:
    from kubepredict import ml

    results: dict = {"machine": {"cpus": os.cpu_count()}, "rows": []}
    rows = results["rows"]
    iris = iris_frame()
    features = iris.drop(columns=["species"])
    with (
        tempfile.TemporaryDirectory() as tmp,
        GatewayProcess(Path(tmp), env={"KUBEPREDICT_LOG_LEVEL": "WARNING"}) as gw,
    ):
        http = httpx.Client(base_url=gw.url, timeout=600)
        # --- training: job latency vs raw fit -----------------------------------------------------
        q, job = train_iris(http, iris)
        train_wall = job_seconds(job)
        rows.append(
            (
                "train iris LogisticRegression: submit → succeeded, first job after start",
                f"{train_wall:.2f} s",
                f"fit {job['metrics']['fit_seconds']:.3f} s inside the job; waits for the fork server's imports",
            )
        )
        gw.settle()
        _q, again = train_iris(http, iris)
        rows.append(
            (
                "the same, next job (fork server ready)",
                f"{job_seconds(again):.2f} s",
                f"fit {again['metrics']['fit_seconds']:.3f} s inside the job",
            )
        )
        model_id = q["model_id"]
        result = ml.train(
            iris,
            target="species",
            features=list(features.columns),
            task="classification",
            algorithm="logistic_regression",
            params={},
        )
        pipeline = result.pipeline
        # --- online -------------------------------------------------------------------------------
        one = {"model_id": model_id, "instances": features.head(1).to_dict(orient="records")}
        raw = raw_sklearn_latency(pipeline, features, REQUESTS)
        rows.append(
            (
                "raw scikit-learn predict+proba, 1 row, in process",
                f"{raw['req_s']:.0f} calls/s",
                f"p50 {raw['p50_ms']:.2f} ms, p99 {raw['p99_ms']:.2f} ms",
            )
        )
        for c in (1, 4, 16):
            r = latency_run(gw.url, one, c, REQUESTS)
            results[f"online_c{c}"] = r
            rows.append(
                (
                    f"online predict 1 row over HTTP, concurrency {c}",
                    f"{r['req_s']:.0f} req/s",
                    f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms",
                )
            )
        for n_rows in (100, 10_000):
            batch = pd.concat([features] * (n_rows // len(features) + 1)).head(n_rows)
            body = {
                "model_id": model_id,
                "dataframe_split": {"columns": list(batch.columns), "data": batch.values.tolist()},
            }
            r = latency_run(gw.url, body, 1, max(20, REQUESTS // (n_rows // 10)))
            rows.append(
                (
                    f"online predict {n_rows} rows per request",
                    f"{r['req_s'] * n_rows:,.0f} rows/s",
                    f"p50 {r['p50_ms']:.1f} ms per request",
                )
            )
        # --- stream scoring over Kafka (its own broker; the scorer reads this gateway's catalogue) ---------
        from bench.stream import stream_rows

        stream_table, results["kafka_stream"] = stream_rows(Path(tmp), model_id, features.to_dict(orient="records"))
        rows.extend(stream_table)
    # --- upload, train, batch prediction and CSV download of 1M rows (10M with BIG=1) -------------
    from bench import batch as batch_bench

    rows += batch_bench.main()
    # --- sharded batch prediction: 1 vs 2 shards --------------------------------------------------
    from bench import shards

    shard_rows, results["shards"] = shards.run()  # 1 vs 2 shards, its own gateway (BENCH_SHARD_ROWS rows)
    rows.extend(shard_rows)
    # --- forecasting: 200 series × 365 days trained as one job, a 28-day horizon predicted ---------
    from bench import forecast

    forecast_rows, results["forecast"] = forecast.run()
    rows.extend(forecast_rows)
    _print(rows)
    Path(__file__).with_name("results.json").write_text(json.dumps(results, indent=2, default=str))


def _print(rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Kubepredict benchmarks ({os.cpu_count()} CPUs, client and server on one machine)")
    for col in ("benchmark", "result", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
