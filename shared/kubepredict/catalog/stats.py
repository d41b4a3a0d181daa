"""Aggregate figures for metrics, computed by the database (a few small queries per scrape)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from . import schema

J = schema.jobs


def job_stats(catalog, buckets: tuple[float, ...]) -> dict:
    with catalog.ro() as conn:
        by_status = {(k, s): n for k, s, n in conn.execute(
            select(J.c.kind, J.c.status, func.count()).group_by(J.c.kind, J.c.status))}
        finished = conn.execute(select(J.c.kind, J.c.started_at, J.c.finished_at).where(
            J.c.status.in_(("succeeded", "failed")), J.c.started_at.is_not(None), J.c.finished_at.is_not(None))).all()
        rows_predicted = 0
        for (summary,) in conn.execute(select(J.c.summary).where(J.c.kind == "predict", J.c.status == "succeeded")):
            rows_predicted += int((json.loads(summary) if summary else {}).get("rows") or 0)
        pending = conn.execute(select(func.count()).select_from(schema.outbox)
                               .where(schema.outbox.c.sent_at.is_(None))).scalar_one()
    durations: dict[str, tuple[list, float]] = {}
    per_kind: dict[str, list[float]] = {}
    for kind, start, end in finished:
        per_kind.setdefault(kind, []).append(max(0.0, (end - start).total_seconds()))
    for kind, values in per_kind.items():
        cumulative = [(str(b), sum(1 for x in values if x <= b)) for b in buckets]
        cumulative.append(("+Inf", len(values)))
        durations[kind] = (cumulative, sum(values))
    return {"by_status": by_status, "durations": durations, "rows_predicted": rows_predicted,
            "events_pending": pending}
