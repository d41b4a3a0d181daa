"""``make bench-peers``: Kubepredict and MLServer side by side, one run, same machine, same models.

Environment: ``BENCH_SECONDS`` (timed seconds per cell, default 10), ``BENCH_WARMUP_SECONDS`` (default 2),
``BENCH_PEERS_JSON`` (default ``test-artifacts/bench-peers.json``), ``BENCH_MLSERVER_PARALLEL_WORKERS``
(unset = MLServer's default), ``KUBEPREDICT_CACHE`` (where the MLServer virtualenv lives).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from . import kubepredict as kp
from . import mlserver, report, wrk
from .procs import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_WARMUP_SECONDS", "2"))
OUT = Path(os.environ.get("BENCH_PEERS_JSON") or kp.REPO / "test-artifacts" / "bench-peers.json")
PARALLEL_WORKERS = os.environ.get("BENCH_MLSERVER_PARALLEL_WORKERS")
GATEWAY, GATEWAY_V2, FUNCTION = (
    "Kubepredict gateway /function/predict",
    "Kubepredict gateway V2",
    "Kubepredict OpenFaaS function (index.py)",
)


@dataclass
class Target:
    """A server under test: where a model's requests go, what their body is, how to read labels back."""

    server: str
    url: Callable[[str], str]
    body: Callable[[str, pd.DataFrame], dict]
    labels: Callable[[dict], list]
    expected: Callable[[str, pd.DataFrame], list] | None = None  # labels, when not the pipeline's


def log(msg: str) -> None:
    print(f"[bench-peers {datetime.datetime.now().astimezone():%H:%M:%S}] {msg}", flush=True)


def iris_features() -> pd.DataFrame:
    from kubepredict.services.ingest import parse_csv

    with open(kp.IRIS, "rb") as f:
        return parse_csv(f).drop(columns=["species"])


def check_answer(target: Target, model: str, frame: pd.DataFrame, expected: list) -> str | None:
    """None when the server answers 200 with the expected labels, else why not."""
    try:
        r = httpx.post(target.url(model), json=target.body(model, frame), timeout=60)
    except httpx.HTTPError as exc:
        return f"request failed: {exc}"
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    try:
        got = [str(v) for v in target.labels(r.json())]
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable answer ({exc}): {r.text[:200]}"
    if got != expected:
        return f"wrong labels: {got[:5]} instead of {expected[:5]}"
    return None


def measure(target: Target, case: report.Case, frame: pd.DataFrame, expected: list, work: Path, wrk_bin: str) -> dict:
    problem = check_answer(target, case.model, frame, expected)
    if problem:
        return report.cell(target.server, case, error=problem)
    slug = "".join(ch if ch.isalnum() else "-" for ch in target.server.lower())
    script = work / f"post-{slug}-{case.model}-{case.rows}.lua"
    script.write_text(wrk.post_script(json.dumps(target.body(case.model, frame)).encode()))
    threads = 1 if case.concurrency == 1 else 2  # 2 cores: client threads compete with the server
    args = dict(connections=case.concurrency, threads=threads, wrk=wrk_bin)
    if WARMUP > 0:
        warm = wrk.run(target.url(case.model), script, seconds=WARMUP, **args)
        if warm.error:
            return report.cell(target.server, case, error=f"warm-up: {warm.error}")
    result = wrk.run(target.url(case.model), script, seconds=SECONDS, **args)
    return report.cell(target.server, case, result.as_dict())


def v2_available(url: str, body: dict) -> tuple[bool, str]:
    try:
        r = httpx.post(url, json=body, timeout=30)
    except httpx.HTTPError as exc:
        return False, f"probe failed: {exc}"
    if r.status_code == 404:
        return False, "not available (404)"
    return True, f"probe answered {r.status_code}"


def run(work: Path, stack: contextlib.ExitStack, notes: list[str]) -> tuple[list[dict], list[str], dict]:
    wrk_bin = wrk.ensure_wrk()
    bin_dir = mlserver.ensure_venv(log)
    data = work / "data"
    log("starting Kubepredict (kubepredict serve) and training iris-lr, iris-rf through the API")
    gateway, gw_url = kp.start_gateway(data, work / "gateway.log")
    stack.callback(gateway.stop)
    with httpx.Client(base_url=gw_url, timeout=120) as http:
        models = kp.train_models(http)
    pipelines = {name: kp.load_pipeline(data, m) for name, m in models.items()}
    features = iris_features()
    bare = mlserver.bare_estimators(features, kp.iris_labels())
    log("starting MLServer and the OpenFaaS function server")
    ml_port = free_port()
    root = mlserver.write_repository(work / "mlserver", {**pipelines, **bare}, ml_port, PARALLEL_WORKERS)
    ml = mlserver.start(bin_dir, root, ml_port, [*pipelines, *bare], work / "mlserver.log")
    stack.callback(ml.stop)
    inproc_port = free_port()  # the same bare models, inference in the HTTP process (its fastest setting)
    inproc_root = mlserver.write_repository(work / "mlserver-inproc", bare, inproc_port, "0")
    ml_inproc = mlserver.start(bin_dir, inproc_root, inproc_port, list(bare), work / "mlserver-inproc.log")
    stack.callback(ml_inproc.stop)
    fn, fn_url = kp.start_function(work / "function", data, work / "function.log")
    stack.callback(fn.stop)

    def kp_body(name: str, frame: pd.DataFrame) -> dict:
        return {"model_id": models[name]["model_id"], "instances": frame.to_dict(orient="records")}

    ml_url = f"http://127.0.0.1:{ml_port}"
    targets = [
        Target(
            report.MLSERVER,
            lambda m: f"{ml_url}/v2/models/{m}/infer",
            lambda m, f: mlserver.v2_body(f),
            mlserver.v2_labels,
        ),
        Target(
            report.MLSERVER_BARE,
            lambda m: f"{ml_url}/v2/models/{m}-bare/infer",
            lambda m, f: mlserver.v2_tensor_body(f),
            mlserver.v2_labels,
            expected=lambda m, f: [str(v) for v in bare[f"{m}-bare"].predict(f.to_numpy(dtype=float))],
        ),
        Target(
            report.MLSERVER_INPROC,
            lambda m: f"http://127.0.0.1:{inproc_port}/v2/models/{m}-bare/infer",
            lambda m, f: mlserver.v2_tensor_body(f),
            mlserver.v2_labels,
            expected=lambda m, f: [str(v) for v in bare[f"{m}-bare"].predict(f.to_numpy(dtype=float))],
        ),
        Target(GATEWAY, lambda m: f"{gw_url}/function/predict", kp_body, lambda a: a["predictions"]),
        Target(
            GATEWAY_V2, lambda m: f"{gw_url}/v2/models/{m}/infer", lambda m, f: mlserver.v2_body(f), mlserver.v2_labels
        ),
        Target(FUNCTION, lambda m: f"{fn_url}/", kp_body, lambda a: a["predictions"]),
    ]
    frames = {1: features.head(1), 100: features.sample(100, random_state=0)}
    v2_target = next(t for t in targets if t.server == GATEWAY_V2)
    ok, why = v2_available(v2_target.url("iris-lr"), mlserver.v2_body(frames[1]))
    notes.append(f"{GATEWAY_V2}: {why}")
    cells = []
    if not ok:
        targets.remove(v2_target)
        cells.append({"server": GATEWAY_V2, "case": "all", "c": "", "skipped": why})
    for case in report.CASES:
        frame = frames[case.rows]
        expected = [str(v) for v in pipelines[case.model].predict(frame)]
        for target in targets:
            log(f"{target.server}: {case.label}, c={case.concurrency}")
            labels = target.expected(case.model, frame) if target.expected else expected
            cells.append(measure(target, case, frame, labels, work, wrk_bin))
    versions = {
        "mlserver": mlserver.VERSION,
        "wrk": wrk_bin,
        "mlserver_pins": mlserver.requirements(),
        "mlserver_settings": json.loads((root / "settings.json").read_text()),
    }
    return cells, [t.server for t in targets if t.server not in report.PEERS], versions


def keep_logs(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for logfile in src.glob("*.log"):
        shutil.copy(logfile, dest / logfile.name)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    notes = [
        (
            f"{SECONDS:g} s per cell after a {WARMUP:g} s warm-up; wrk -t1 at c=1, -t2 at c=8; "
            f"client and servers on one {os.cpu_count()}-CPU machine (load average at start "
            f"{os.getloadavg()[0]:.2f})"
        ),
        "MLServer: `mlserver start` with default settings except ports and host 127.0.0.1"
        + (f", parallel_workers={PARALLEL_WORKERS}" if PARALLEL_WORKERS else " (parallel_workers default)")
        + "; V2 REST with content_type pd (our pipeline) or one 2-D FP64 tensor (bare estimator fitted on "
        "raw numpy features), output `predict` only; ratios use the faster MLServer row and the lower "
        "p99; Kubepredict answers predictions and probabilities",
    ]
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp, contextlib.ExitStack() as stack:
        try:
            cells, servers, versions = run(Path(tmp), stack, notes)
        except Exception:
            for logfile in sorted(Path(tmp).glob("*.log")):
                print(f"--- {logfile.name} (tail) ---", file=sys.stderr)
                print("\n".join(logfile.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
            raise
        finally:
            stack.close()  # servers stop before their logs are kept and the folder goes
            keep_logs(Path(tmp), OUT.parent / "bench-peers-logs")
    ratio_rows = report.ratios(cells, servers)
    notes.append(f"load average at end {os.getloadavg()[0]:.2f}")
    report.print_tables(cells, ratio_rows, f"Kubepredict vs MLServer {mlserver.VERSION}, iris, wrk", notes)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "cpus": os.cpu_count(),
                "seconds": SECONDS,
                "warmup_seconds": WARMUP,
                "versions": versions,
                "notes": notes,
                "cells": cells,
                "ratios": ratio_rows,
            },
            indent=2,
        )
    )
    log(f"results written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
