"""Aggregate figures for metrics, computed by the database (a few small queries per scrape).

Nothing here loads one row per job: counts, bucket counts and sums are ``GROUP BY`` aggregates, so a
scrape costs the same with ten jobs or ten million (the bucket sums scan finished jobs in the database).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ..ids import utcnow
from . import schema

J = schema.jobs
I = schema.invocations  # noqa: E741 - the one-letter table alias the catalogue modules use
Buckets = list[tuple[str, int]]  # [(le, cumulative count)…, ("+Inf", total)]


class Transactions(Protocol):
    """What these figures need of a catalogue (``Catalog`` or its ``Database``)."""

    def tx(self) -> AbstractContextManager[Connection]: ...

    def ro(self) -> AbstractContextManager[Connection]: ...


def _seconds(conn: Connection, start: Any, end: Any) -> Any:
    """``end - start`` in seconds, in SQL (SQLite stores datetimes as text; PostgreSQL has intervals)."""
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def job_stats(catalog: Transactions, buckets: tuple[float, ...], kinds: tuple[str, ...] = ()) -> dict[str, Any]:
    """Jobs by kind and status, finished-job duration buckets (every kind in ``kinds`` present, empty or not),
    rows predicted, outbox backlog, oldest ages."""
    with catalog.ro() as conn:
        by_status = {
            (k, s): n
            for k, s, n in conn.execute(select(J.c.kind, J.c.status, func.count()).group_by(J.c.kind, J.c.status))
        }
        dur = _seconds(conn, J.c.started_at, J.c.finished_at)
        cols = [func.sum(case((dur <= b, 1), else_=0)) for b in buckets]
        finished = conn.execute(
            select(J.c.kind, func.count(), func.coalesce(func.sum(dur), 0.0), *cols)
            .where(J.c.status.in_(("succeeded", "failed")), J.c.started_at.is_not(None), J.c.finished_at.is_not(None))
            .group_by(J.c.kind)
        ).all()
        rows_predicted = conn.execute(
            select(func.coalesce(func.sum(J.c.rows), 0)).where(J.c.kind == "predict", J.c.status == "succeeded")
        ).scalar_one()
        pending = conn.execute(
            select(func.count()).select_from(schema.outbox).where(schema.outbox.c.sent_at.is_(None))
        ).scalar_one()
        oldest = {
            (k, s): t
            for k, s, t in conn.execute(
                select(
                    J.c.kind,
                    J.c.status,
                    func.min(case((J.c.status == "running", J.c.started_at), else_=J.c.created_at)),
                )
                .where(J.c.status.in_(("queued", "running")))
                .group_by(J.c.kind, J.c.status)
            )
        }
    now = utcnow()
    durations: dict[str, tuple[Buckets, float]] = {
        kind: (_cumulative(buckets, [0] * len(buckets), 0), 0.0) for kind in kinds
    }
    for kind, count, total, *cumulative in finished:
        durations[kind] = (_cumulative(buckets, cumulative, count), max(0.0, float(total or 0.0)))
    ages = {key: max(0.0, (now - _dt(t)).total_seconds()) for key, t in oldest.items() if t is not None}
    return {
        "by_status": by_status,
        "durations": durations,
        "rows_predicted": int(rows_predicted or 0),
        "events_pending": pending,
        "oldest_age_seconds": ages,
    }


def _dt(value: datetime | str) -> datetime:
    """SQLite aggregates (MIN over a CASE) come back as text; PostgreSQL gives a datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _le(bound: float) -> str:
    """Bucket bound as Prometheus clients print it (``1.0``, ``0.005``)."""
    return repr(float(bound))


def _cumulative(buckets: tuple[float, ...], counts: list[Any], total: int) -> Buckets:
    """``[(le, cumulative count)…, ("+Inf", total)]`` as a HistogramMetricFamily wants it."""
    return [(_le(b), int(n or 0)) for b, n in zip(buckets, counts, strict=True)] + [("+Inf", int(total))]


# ---- durable function-call counts (Kubeless) -------------------------------------------------------
def record_invocation(
    catalog: Transactions, function_name: str, code: str, seconds: float, buckets: tuple[float, ...]
) -> None:
    """Count one call: upsert its (function, code, smallest bucket ≥ seconds) row, in one statement."""
    le = next((_le(b) for b in buckets if seconds <= b), "+Inf")
    values = {"function_name": function_name, "code": code, "le": le, "count": 1, "sum_seconds": float(seconds)}
    with catalog.tx() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(I).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[I.c.function_name, I.c.code, I.c.le],
            set_={"count": I.c.count + literal_column("1"), "sum_seconds": I.c.sum_seconds + stmt.excluded.sum_seconds},
        )
        conn.execute(stmt)


def invocation_stats(
    catalog: Transactions, buckets: tuple[float, ...]
) -> dict[tuple[str, str], tuple[Buckets, float, int]]:
    """``{(function_name, code): ([(le, cumulative count)…, ("+Inf", n)], sum_seconds, n)}``."""
    with catalog.ro() as conn:
        rows = conn.execute(select(I.c.function_name, I.c.code, I.c.le, I.c.count, I.c.sum_seconds)).all()
    # (function, code, le) is the table's key: one count per bucket, not yet cumulative.
    per: dict[tuple[str, str], tuple[dict[str, int], float]] = {}
    for fn, code, le, count, total in rows:
        by_le, seconds = per.get((fn, code), ({}, 0.0))
        by_le[le] = int(count)
        per[(fn, code)] = (by_le, seconds + float(total))
    out = {}
    for key, (by_le, seconds) in per.items():
        running, cumulative = 0, []
        for b in buckets:
            running += by_le.get(_le(b), 0)
            cumulative.append(running)
        n = sum(by_le.values())
        out[key] = (_cumulative(buckets, cumulative, n), seconds, n)
    return out


# ---- drift ---------------------------------------------------------------------------------------
def drift_stats(catalog: Transactions) -> dict[str, dict[str, float]]:
    """``{model name: {feature: PSI}}`` from the last succeeded batch prediction of each model name that has a
    drift report (one small row per name: the database picks the latest job; only those summaries are read)."""
    M = schema.models
    joined = J.join(M, M.c.model_id == J.c.model_id)
    done = (J.c.kind == "predict", J.c.status == "succeeded", J.c.finished_at.is_not(None))
    latest = select(M.c.name, func.max(J.c.finished_at).label("at")).select_from(joined).where(*done).group_by(M.c.name)
    latest_sq = latest.subquery()
    query = (
        select(M.c.name, J.c.summary)
        .select_from(joined.join(latest_sq, (latest_sq.c.name == M.c.name) & (latest_sq.c.at == J.c.finished_at)))
        .where(*done)
    )
    out: dict[str, dict[str, float]] = {}
    with catalog.ro() as conn:
        for name, summary in conn.execute(query):
            drift = (summary or {}).get("drift") if isinstance(summary, dict) else None
            if not drift or not drift.get("available"):
                continue
            out[name] = {f["feature"]: float(f["psi"]) for f in drift.get("features", []) if f.get("psi") is not None}
    return out
