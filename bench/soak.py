"""``make soak``: mixed traffic against a real gateway for ``SOAK_SECONDS`` (default 600) with faults injected,
then a consistency check of what the platform acknowledged.

Traffic: online predictions from 16 connections, uploads, trains, batch predicts, result reads and cancels.
Faults: one local worker process killed with SIGKILL every ``SOAK_KILL_EVERY`` seconds (60), the gateway
restarted once half-way. Run against the ``make run`` defaults (SQLite + folder) and against PostgreSQL +
S3Proxy (started with the test helpers; ``SOAK_PG=0`` skips it). Prints one table per backend: requests
served, errors by status, p99 per route, gateway RSS and open fds at start and end of each gateway process
(growth within ``SOAK_RSS_BOUND_MB`` / ``SOAK_FD_BOUND``), and the consistency check:
every acknowledged dataset, model and job present; every job final or running with a fresh heartbeat;
no orphaned objects in the store; no prediction rows of a failed job. Exits 1 when the check fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.batch import _grandchildren, postgres_s3_env, proc_status
from tests.gateway_process import GatewayProcess

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
KILL_EVERY = float(os.environ.get("SOAK_KILL_EVERY", "60"))
CONNECTIONS = 16
ONLINE_PAUSE = float(os.environ.get("SOAK_ONLINE_PAUSE", "0.05"))  # per connection, so the box stays usable
SETTLE = float(os.environ.get("SOAK_SETTLE_SECONDS", "180"))  # for queued/running jobs to end after traffic
RSS_BOUND_MB = float(os.environ.get("SOAK_RSS_BOUND_MB", "150"))
FD_BOUND = int(os.environ.get("SOAK_FD_BOUND", "32"))
WARMUP = 20.0  # seconds of traffic before a gateway's "start" figures (imports, caches, pools filled)
FINAL = ("succeeded", "failed", "cancelled")
IRIS = Path(__file__).resolve().parents[1] / "shared" / "kubepredict" / "data" / "iris.csv"


# ---- recording ---------------------------------------------------------------------------------------
class Stats:
    """Latency and status per route, thread-safe. A connection error counts as status ``conn``."""

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)

    def record(self, route: str, status: int | str, seconds: float) -> None:
        with self._lock:
            self.seconds[route].append(seconds)
            self.status[route][str(status)] += 1

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(route, served, errors by status, p99): served = 2xx answers; errors = everything else."""
        out = []
        for route in sorted(self.status):
            counts = self.status[route]
            served = sum(n for s, n in counts.items() if s.startswith("2"))
            errors = ", ".join(f"{s}×{n}" for s, n in sorted(counts.items()) if not s.startswith("2")) or "-"
            out.append((route, str(served), errors, f"{p99(self.seconds[route]) * 1000:.0f} ms"))
        return out


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass
class Acks:
    """What the gateway acknowledged (2xx): the consistency check expects every one of these."""

    datasets: set = field(default_factory=set)
    models: set = field(default_factory=set)
    jobs: dict = field(default_factory=dict)  # job_id → kind
    ready: list = field(default_factory=list)  # models seen succeeded: batch and online targets
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ProcessFigures:
    label: str
    rss_start: int = 0
    fds_start: int = 0
    rss_end: int = 0
    fds_end: int = 0

    def row(self) -> tuple[str, str, str, str]:
        grow_mb, grow_fd = (self.rss_end - self.rss_start) / 2**20, self.fds_end - self.fds_start
        ok = grow_mb <= RSS_BOUND_MB and grow_fd <= FD_BOUND
        return (
            f"gateway {self.label}: RSS, open fds",
            f"{self.rss_start / 2**20:.0f} → {self.rss_end / 2**20:.0f} MiB",
            f"{self.fds_start} → {self.fds_end} fds",
            (
                f"growth {grow_mb:+.0f} MiB, {grow_fd:+d} fds: {'within' if ok else 'OVER'} the bound "
                f"({RSS_BOUND_MB:.0f} MiB, {FD_BOUND} fds)"
            ),
        )


def sample(pid: int) -> tuple[int, int]:
    """(RSS bytes, open fds) of a process."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = 0
    return proc_status(pid).get("VmRSS", 0), fds


# ---- consistency -----------------------------------------------------------------------------------
def orphans(services) -> list[str]:
    """Object-store keys the storage GC would sweep (``services.orphans.find_orphans``: no owner row, or a
    model whose training failed), at the end of the run when nothing writes any more."""
    from kubepredict.services.orphans import find_orphans

    return sorted(k for k in find_orphans(services, grace_seconds=0) if k.startswith(("datasets/", "models/")))


def consistency(services, acks: Acks, heartbeat_timeout: float) -> list[str]:
    """Problems found (empty = consistent)."""
    from sqlalchemy import func, select

    from kubepredict.catalog import schema as s
    from kubepredict.ids import utcnow

    problems = []
    with services.catalog.ro() as conn:
        datasets = {r[0] for r in conn.execute(select(s.datasets.c.dataset_id))}
        models = {r[0] for r in conn.execute(select(s.models.c.model_id))}
        jobs = {r.job_id: r for r in conn.execute(select(s.jobs.c.job_id, s.jobs.c.status, s.jobs.c.heartbeat_at))}
        failed_with_rows = conn.execute(
            select(s.prediction_batches.c.job_id, func.count())
            .join(s.jobs, s.jobs.c.job_id == s.prediction_batches.c.job_id)
            .where(s.jobs.c.status == "failed")
            .group_by(s.prediction_batches.c.job_id)
        ).all()
    for kind, acked, present in (
        ("dataset", acks.datasets, datasets),
        ("model", acks.models, models),
        ("job", set(acks.jobs), set(jobs)),
    ):
        missing = sorted(acked - present)
        if missing:
            problems.append(f"{len(missing)} acknowledged {kind}(s) missing: {', '.join(missing[:5])}")
    now = utcnow()
    for job_id, row in jobs.items():
        if row.status in FINAL:
            continue
        beat = row.heartbeat_at
        if beat is not None and beat.tzinfo is not None and now.tzinfo is None:
            beat = beat.replace(tzinfo=None)
        fresh = row.status == "running" and beat is not None and (now - beat).total_seconds() <= heartbeat_timeout
        if not fresh:
            problems.append(f"job {job_id} is {row.status} without a fresh heartbeat (last {beat})")
    for job_id, n in failed_with_rows:
        problems.append(f"failed job {job_id} has {n} prediction batch(es)")
    found = orphans(services)
    if found:
        problems.append(
            f"{len(found)} orphaned object(s) in the store: " + ", ".join(_describe(services, key) for key in found[:5])
        )
    return problems


def _describe(services, key: str) -> str:
    """An orphan key with what the catalogue says of its owner (a model's status and its job's)."""
    from sqlalchemy import select

    from kubepredict.catalog import schema as s

    parts = key.split("/")
    if parts[0] != "models" or len(parts) < 2:
        return key
    with services.catalog.ro() as conn:
        row = conn.execute(
            select(s.models.c.status, s.jobs.c.status.label("job"), s.jobs.c.error)
            .join(s.jobs, s.jobs.c.job_id == s.models.c.job_id, isouter=True)
            .where(s.models.c.model_id == parts[1])
        ).first()
    if row is None:
        return f"{key} (no model row)"
    return f"{key} (model {row.status}, job {row.job}{': ' + str(row.error)[:80] if row.error else ''})"


# ---- traffic ----------------------------------------------------------------------------------------
class Traffic:
    def __init__(self, url: str, stats: Stats, acks: Acks, csvs: list[bytes]):
        self.url, self.stats, self.acks, self.csvs = url, stats, acks, csvs
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def call(self, client: httpx.Client, route: str, method: str, path: str, **kw) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            r = client.request(method, path, **kw)
        except httpx.HTTPError:
            self.stats.record(route, "conn", time.perf_counter() - started)
            return None
        self.stats.record(route, r.status_code, time.perf_counter() - started)
        return r

    def loop(self, name: str, pause: float, body) -> None:
        def run():
            with httpx.Client(base_url=self.url, timeout=60) as client:
                while not self.stop.is_set():
                    try:
                        body(client)
                    except Exception as exc:  # noqa: BLE001 - a traffic bug is reported, never ends the soak
                        print(f"soak: {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    self.stop.wait(pause)

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def pick(self, items):
        with self.acks.lock:
            items = list(items)
        return random.choice(items) if items else None

    # one body per kind of request
    def online(self, client):
        model = self.pick(self.acks.ready[:1])  # the first model: always a small LR, as users call online
        row = {"sepal_length": 5.1 + random.random(), "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        self.call(
            client, "predict (online, 1 row)", "POST", "/function/predict", json={"model_id": model, "instances": [row]}
        )

    def upload(self, client):
        r = self.call(
            client,
            "upload",
            "POST",
            "/function/upload",
            params={"name": "soak"},
            content=random.choice(self.csvs),
            headers={"Content-Type": "text/csv"},
        )
        if r is not None and r.status_code == 201:
            with self.acks.lock:
                self.acks.datasets.add(r.json()["dataset_id"])

    def _train(self, client, route: str, params: dict) -> str | None:
        dataset = self.pick(self.acks.datasets)
        algorithm, params = random.choice([("logistic_regression", {}), ("random_forest", params)])
        r = self.call(
            client,
            route,
            "POST",
            "/function/train",
            json={"dataset_id": dataset, "target": "species", "algorithm": algorithm, "params": params},
        )
        if r is not None and r.status_code == 202:
            body = r.json()
            with self.acks.lock:
                self.acks.jobs[body["job_id"]] = "train"
                self.acks.models.add(body["model_id"])
            return body["job_id"]
        return None

    def train(self, client):
        self._train(client, "train", {"n_estimators": 20})

    def batch(self, client):
        model, dataset = self.pick(self.acks.ready), self.pick(self.acks.datasets)
        r = self.call(
            client, "predict (batch job)", "POST", "/function/predict", json={"model_id": model, "dataset_id": dataset}
        )
        if r is not None and r.status_code == 202:
            with self.acks.lock:
                self.acks.jobs[r.json()["job_id"]] = "predict"

    def result(self, client):
        job = self.pick(self.acks.jobs)
        if job is None:
            return
        r = self.call(client, "result", "GET", f"/function/result/{job}", params={"limit": 20})
        if r is not None and r.status_code == 200:
            body = r.json()
            if body["kind"] == "train" and body["status"] == "succeeded":
                with self.acks.lock:
                    if body["model_id"] not in self.acks.ready:
                        self.acks.ready.append(body["model_id"])

    def cancel(self, client):
        job = self._train(client, "train (to cancel)", {"n_estimators": 300})
        if job:
            self.stop.wait(random.uniform(0.1, 2.0))
            self.call(client, "cancel", "DELETE", f"/function/result/{job}")

    def start(self):
        for i in range(CONNECTIONS):
            self.loop(f"online-{i}", ONLINE_PAUSE, self.online)
        self.loop("upload", 2.0, self.upload)
        self.loop("train", 4.0, self.train)
        self.loop("batch", 4.0, self.batch)
        for i in range(2):
            self.loop(f"result-{i}", 0.2, self.result)
        self.loop("cancel", 8.0, self.cancel)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)


def kill_a_worker(gw_pid: int) -> bool:
    """SIGKILL one local worker process (a child of the gateway's fork server); False if none runs."""
    workers = [int(p) for child in _grandchildren(str(gw_pid)) for p in _grandchildren(child)]
    if not workers:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(random.choice(workers), signal.SIGKILL)
    return True


def csv_bodies() -> list[bytes]:
    """Iris at a few sizes (150 to 4,500 rows) with jitter, so uploads and jobs are not all alike."""
    import numpy as np
    import pandas as pd

    iris = pd.read_csv(io.BytesIO(IRIS.read_bytes()))
    rng = np.random.default_rng(0)
    out = []
    for k in (1, 3, 10, 30):
        frame = pd.concat([iris] * k, ignore_index=True)
        numeric = frame.select_dtypes("number").columns
        frame[numeric] = (frame[numeric] + rng.normal(0, 0.05, size=(len(frame), len(numeric)))).round(3)
        out.append(frame.to_csv(index=False).encode())
    return out


# ---- one backend ------------------------------------------------------------------------------------
def run_backend(env: dict, data_dir: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Soak one backend; returns (table rows, consistency problems)."""
    stats, acks = Stats(), Acks()
    gw = GatewayProcess(data_dir, env={"KUBEPREDICT_LOG_LEVEL": "WARNING", **env}).start()
    figures: list[ProcessFigures] = []
    kills = restarts = 0
    downtime = 0.0
    try:
        with httpx.Client(base_url=gw.url, timeout=120) as http:
            from bench.jobs import wait

            csvs = csv_bodies()
            ds = http.post(
                "/function/upload", params={"name": "soak-iris"}, content=csvs[0], headers={"Content-Type": "text/csv"}
            ).json()["dataset_id"]
            q = http.post(
                "/function/train", json={"dataset_id": ds, "target": "species", "algorithm": "logistic_regression"}
            ).json()
            assert wait(http, q["job_id"])["status"] == "succeeded"
            acks.datasets.add(ds), acks.models.add(q["model_id"]), acks.ready.append(q["model_id"])
            acks.jobs[q["job_id"]] = "train"
        traffic = Traffic(gw.url, stats, acks, csvs)
        started = time.monotonic()
        traffic.start()
        next_kill, restart_at, sample_at = (
            started + KILL_EVERY,
            started + SECONDS / 2,
            started + min(WARMUP, SECONDS / 4),
        )
        while (now := time.monotonic()) < started + SECONDS:
            if now >= sample_at:  # a gateway's "start" figures, once it has served WARMUP s of traffic
                figures.append(ProcessFigures("after restart" if restarts else "before restart", *sample(gw.proc.pid)))
                sample_at = float("inf")
            if now >= next_kill:
                if kill_a_worker(gw.proc.pid):
                    kills += 1
                    next_kill = now + KILL_EVERY
                else:
                    next_kill = now + 1  # no worker running right now: try again shortly
            if now >= restart_at:
                if not figures:
                    figures.append(ProcessFigures("before restart (no warm-up)", *sample(gw.proc.pid)))
                figures[-1].rss_end, figures[-1].fds_end = sample(gw.proc.pid)
                gw.stop()
                gw.start()
                restarts, downtime = restarts + 1, time.monotonic() - now
                restart_at, sample_at = float("inf"), time.monotonic() + min(WARMUP, SECONDS / 4)
            time.sleep(0.25)
        if sample_at != float("inf"):  # a short run: this gateway never reached its warm-up sample
            figures.append(
                ProcessFigures("after restart (no warm-up)" if restarts else "(no warm-up)", *sample(gw.proc.pid))
            )
        figures[-1].rss_end, figures[-1].fds_end = sample(gw.proc.pid)
        traffic.finish()
        problems, outcomes = settle_and_check(gw, acks)
    finally:
        gw.stop()
    rows = [(f"{route}", served, errors, f"p99 {lat}") for route, served, errors, lat in stats.rows()]
    rows += [f.row() for f in figures]
    rows.append(
        (
            "faults",
            f"{kills} workers SIGKILLed",
            f"{restarts} gateway restart ({downtime:.1f} s down)",
            f"{SECONDS:.0f} s of traffic, {CONNECTIONS} online connections",
        )
    )
    rows.append(
        (
            "acknowledged",
            f"{len(acks.datasets)} datasets, {len(acks.models)} models",
            f"{len(acks.jobs)} jobs",
            f"jobs at the end: {outcomes}",
        )
    )
    rows.append(
        (
            "consistency check",
            "PASS" if not problems else "FAIL",
            "; ".join(problems)[:300] or "all present, jobs final or alive, no orphans, no predictions of failed jobs",
            "",
        )
    )
    return rows, problems


def job_outcomes(services) -> str:
    """Jobs by final status (failures by error code) and how many were retried after a lost worker."""
    from sqlalchemy import select

    from kubepredict.catalog import schema as s

    with services.catalog.ro() as conn:
        rows = conn.execute(select(s.jobs.c.status, s.jobs.c.error, s.jobs.c.attempt)).all()
    by_status = Counter(r.status for r in rows)
    codes = Counter((r.error or {}).get("code", "?") for r in rows if r.status == "failed" and r.error)
    retried = sum(1 for r in rows if (r.attempt or 0) > 1)
    failed = f" ({', '.join(f'{c}×{n}' for c, n in codes.most_common())})" if codes else ""
    return (
        ", ".join(f"{n} {st}" + (failed if st == "failed" else "") for st, n in sorted(by_status.items()))
        + f"; {retried} retried after a lost worker"
    )


def settle_and_check(gw: GatewayProcess, acks: Acks) -> tuple[list[str], str]:
    """Wait (up to SETTLE s) for queued jobs to start and running ones to end, then check the catalogue.
    Returns (problems, job outcomes)."""
    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings

    settings = Settings.from_env(gw.env, data_dir=gw.data_dir)
    services = bootstrap(settings, create_schema=False)
    try:
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline:
            if services.catalog.count_jobs(status="queued") + services.catalog.count_jobs(status="running") == 0:
                break
            time.sleep(1)
        return consistency(services, acks, settings.heartbeat_timeout_seconds), job_outcomes(services)
    finally:
        services.catalog.dispose()


def print_table(title: str, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("route / figure", "served", "errors by status", "p99 / detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)


def main() -> int:
    failed = False
    backends = [("make run defaults: SQLite + folder", None)]
    if os.environ.get("SOAK_PG", "1") not in ("0", "false", "no"):
        backends.append(("PostgreSQL + S3 (S3Proxy)", postgres_s3_env))
    for tag, make_env in backends:
        with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            env = make_env(stack) if make_env else {}
            rows, problems = run_backend(env, Path(tmp))
            print_table(f"Soak, {tag} ({os.cpu_count()} CPUs, client and server on one machine)", rows)
            for p in problems:
                print(f"  consistency: {p}")
            failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
