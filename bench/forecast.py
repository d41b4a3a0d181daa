"""Forecasting at scale: 200 series × 365 daily points trained as one job (``auto``: backtests of the
baselines, ridge and histogram gradient boosting, then the final fit), then a batch forecast of a
28-day horizon for every series, and one online forecast.

Run alone: ``python -m bench.forecast``; ``make bench`` runs it too. ``BENCH_FC_SERIES`` (200),
``BENCH_FC_DAYS`` (365), ``BENCH_FC_ALGORITHM`` (auto) change the size and the model.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from bench.jobs import job_seconds, wait
from tests.gateway_process import GatewayProcess

SERIES = int(os.environ.get("BENCH_FC_SERIES", "200"))
DAYS = int(os.environ.get("BENCH_FC_DAYS", "365"))
ALGORITHM = os.environ.get("BENCH_FC_ALGORITHM", "auto")
HORIZON = 28


def sales(series: int = SERIES, days: int = DAYS, seed: int = 0) -> pd.DataFrame:
    """Store × item daily sales: a level, a trend, a weekly and a yearly season, and noise per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    level = rng.uniform(20, 200, series)[:, None]
    y = (
        level
        + rng.normal(0, 0.05, series)[:, None] * t
        + level * 0.2 * np.sin(2 * np.pi * (t[None, :] + rng.integers(0, 7, series)[:, None]) / 7)
        + level * 0.1 * np.sin(2 * np.pi * t[None, :] / 365.25)
        + rng.normal(0, 1, (series, days)) * level * 0.05
    )
    days_ = pd.date_range("2023-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame(
        {
            "day": np.tile(days_, series),
            "store": np.repeat([f"store{i // 20}" for i in range(series)], days),
            "item": np.repeat([f"item{i % 20}" for i in range(series)], days),
            "sales": y.round(2).reshape(-1),
        }
    )


def run() -> tuple[list[tuple[str, str, str]], dict]:
    env = {"KUBEPREDICT_LOG_LEVEL": "WARNING", "KUBEPREDICT_DISPATCH_INTERVAL_SECONDS": "0.1"}
    out: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, GatewayProcess(Path(tmp), env=env) as gw:
        http = httpx.Client(base_url=gw.url, timeout=600)
        frame = sales()
        ds = http.post(
            "/function/upload",
            params={"name": "fc-bench"},
            content=frame.to_csv(index=False).encode(),
            headers={"Content-Type": "text/csv"},
        ).json()
        body = {
            "dataset_id": ds["dataset_id"],
            "task": "forecasting",
            "time_column": "day",
            "target": "sales",
            "series_columns": ["store", "item"],
            "horizon": HORIZON,
            "algorithm": ALGORITHM,
        }
        r = http.post("/function/train", json=body)
        assert r.status_code == 202, r.text
        q = r.json()
        job = wait(http, q["job_id"])
        assert job["status"] == "succeeded", job
        train_s = job_seconds(job)
        model = http.get(f"/function/train/{q['model_id']}").json()
        bt = model["metrics"]["backtest"]
        out.append(
            (
                f"forecast train {SERIES} series × {DAYS} days ({ALGORITHM} → {model['algorithm']})",
                f"{train_s:.1f} s",
                (
                    f"submit → succeeded; backtest {bt['folds']} folds × h={HORIZON}: MASE {bt['overall']['mase']}, "
                    f"{bt['interval']['level']:.0%} interval coverage {bt['interval']['coverage']}"
                ),
            )
        )
        r = http.post("/function/predict", json={"model_id": q["model_id"], "dataset_id": ds["dataset_id"]})
        assert r.status_code == 202, r.text
        pj = wait(http, r.json()["job_id"])
        assert pj["status"] == "succeeded" and pj["summary"]["rows"] == SERIES * HORIZON, pj
        predict_s = job_seconds(pj)
        out.append(
            (
                f"forecast batch predict {SERIES} series × {HORIZON} days",
                f"{predict_s:.2f} s",
                f"{SERIES * HORIZON:,} rows with intervals; submit → succeeded",
            )
        )
        started = time.perf_counter()
        r = http.post("/function/predict/forecast", json={"model_id": q["model_id"], "series": [["store0", "item0"]]})
        assert r.status_code == 200, r.text
        online_ms = 1000 * (time.perf_counter() - started)
        out.append(("forecast online, 1 series × 28 days (stored history)", f"{online_ms:.0f} ms", "first call"))
    figures = {"series": SERIES, "days": DAYS, "train_s": train_s, "predict_s": predict_s, "online_ms": online_ms}
    return out, figures


def main() -> None:
    from bench.__main__ import _print

    rows, figures = run()
    _print(rows)
    print(figures)


if __name__ == "__main__":
    main()
