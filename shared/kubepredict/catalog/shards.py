"""Shards of a sharded predict job: claims, heartbeats, progress and outcomes, one row per shard.

The parent row in ``jobs`` is what users see (status, progress = rows done by all shards, summary);
each shard has its own attempt counter and heartbeat, so a shard whose worker dies is retried alone.
The parent succeeds when every shard succeeded (``finalize`` in ``runner.shards``), and fails
(its other shards cancelled) when one shard fails or runs out of attempts.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Row

from ..errors import JobCancelled
from ..ids import utcnow
from . import schema
from .database import Database
from .jobs import finish
from .records import ShardRecord

logger = logging.getLogger(__name__)
J, S = schema.jobs, schema.job_shards
_WITH_KIND = select(S, J.c.kind).join(J, J.c.job_id == S.c.job_id)  # a shard record names its job's kind


class ShardsRepo:
    def __init__(self, db: Database):
        self.db = db

    # ---- reads ----------------------------------------------------------------------------
    def list_shards(self, job_id: str) -> list[ShardRecord]:
        with self.db.ro() as conn:
            return [ShardRecord.of(r) for r in conn.execute(_WITH_KIND.where(S.c.job_id == job_id).order_by(S.c.shard))]

    def get_shard_row(self, job_id: str, shard: int) -> ShardRecord | None:
        with self.db.ro() as conn:
            row = conn.execute(_WITH_KIND.where(S.c.job_id == job_id, S.c.shard == shard)).first()
        return None if row is None else ShardRecord.of(row)

    def shard_statuses(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, int]]:
        """``(job_id, shard) -> (status, attempt)``; a shard is only "running" while its parent is."""
        if not keys:
            return {}
        job_ids = sorted({k[0] for k in keys})
        with self.db.ro() as conn:
            rows = conn.execute(
                select(S.c.job_id, S.c.shard, S.c.status, S.c.attempt, J.c.status.label("parent"))
                .join(J, J.c.job_id == S.c.job_id)
                .where(S.c.job_id.in_(job_ids))
            ).all()
        wanted = set(keys)
        return {
            (r.job_id, r.shard): (r.status if r.parent == "running" else r.parent, r.attempt)
            for r in rows
            if (r.job_id, r.shard) in wanted
        }

    # ---- claims ---------------------------------------------------------------------------
    def claim_shards(self, limit: int, *, worker: str | None = None) -> list[ShardRecord]:
        """Claim up to ``limit`` queued shards of running parents (oldest parent, lowest shard first)."""
        claimed: list[ShardRecord] = []
        if limit <= 0:
            return claimed
        with self.db.ro() as conn:
            candidates = conn.execute(
                select(S.c.job_id, S.c.shard)
                .join(J, J.c.job_id == S.c.job_id)
                .where(S.c.status == "queued", J.c.status == "running")
                .order_by(J.c.created_at, S.c.job_id, S.c.shard)
                .limit(limit * 4)
            ).all()
        for job_id, shard in candidates:
            if len(claimed) >= limit:
                break
            row = self._claim_shard(job_id, shard, worker=worker, statuses=("queued",))
            if row is not None:
                claimed.append(row)
        return claimed

    def claim_shard_attempt(
        self, job_id: str, shard: int, attempt: int, *, worker: str | None = None
    ) -> ShardRecord | None:
        """A Kubernetes pod takes its shard for ``attempt`` (its index's failure count + 1); None if stale."""
        return self._claim_shard(job_id, shard, worker=worker, statuses=schema.ACTIVE, attempt=attempt)

    def _claim_shard(
        self, job_id: str, shard: int, *, worker: str | None, statuses: tuple[str, ...], attempt: int | None = None
    ) -> ShardRecord | None:
        now = utcnow()
        parent_running = select(J.c.job_id).where(J.c.job_id == job_id, J.c.status == "running").exists()
        where = [S.c.job_id == job_id, S.c.shard == shard, S.c.status.in_(statuses), parent_running]
        if attempt is not None:
            where.append(S.c.attempt < attempt)
        with self.db.tx() as conn:
            res = conn.execute(
                update(S)
                .where(*where)
                .values(
                    status="running",
                    attempt=(attempt if attempt is not None else S.c.attempt + 1),
                    worker=worker,
                    started_at=now,
                    heartbeat_at=now,
                    rows_done=0,
                    error=None,
                )
            )
            if res.rowcount != 1:
                return None
            return ShardRecord.of(conn.execute(_WITH_KIND.where(S.c.job_id == job_id, S.c.shard == shard)).one())

    def set_shard_worker(self, job_id: str, shard: int, attempt: int, worker: str) -> None:
        with self.db.tx() as conn:
            conn.execute(
                update(S).where(S.c.job_id == job_id, S.c.shard == shard, S.c.attempt == attempt).values(worker=worker)
            )

    # ---- progress -------------------------------------------------------------------------
    @staticmethod
    def _shard_running(job_id: str, shard: int, attempt: int) -> tuple[Any, ...]:
        parent_running = select(J.c.job_id).where(J.c.job_id == job_id, J.c.status == "running").exists()
        return (
            S.c.job_id == job_id,
            S.c.shard == shard,
            S.c.attempt == attempt,
            S.c.status == "running",
            parent_running,
        )

    def shard_heartbeat(self, job_id: str, shard: int, attempt: int) -> bool:
        """Touch the shard's heartbeat; False when it is no longer ours (cancelled, lost, parent finished)."""
        with self.db.tx() as conn:
            return (
                conn.execute(
                    update(S).where(*self._shard_running(job_id, shard, attempt)).values(heartbeat_at=utcnow())
                ).rowcount
                == 1
            )

    def shard_progress(self, job_id: str, shard: int, attempt: int, rows_done: int) -> None:
        """Record the shard's rows done; the parent's progress becomes the sum over its shards."""
        with self.db.tx() as conn:
            self._lock_parent(conn, job_id)  # the job before its shard, the order cancel and the outcomes take
            res = conn.execute(
                update(S)
                .where(*self._shard_running(job_id, shard, attempt))
                .values(rows_done=int(rows_done), heartbeat_at=utcnow())
            )
            if res.rowcount != 1:
                raise JobCancelled(f"job {job_id} shard {shard} attempt {attempt} is no longer running")
            done, total = conn.execute(
                select(func.coalesce(func.sum(S.c.rows_done), 0), func.max(S.c.row_stop)).where(S.c.job_id == job_id)
            ).one()
            conn.execute(
                update(J)
                .where(J.c.job_id == job_id, J.c.status == "running")
                .values(stage="scoring", progress=min(1.0, 0.05 + 0.9 * float(done) / max(1, int(total or 0))))
            )

    # ---- outcomes -------------------------------------------------------------------------
    def _lock_parent(self, conn: Connection, job_id: str) -> Row[Any] | None:
        """Serialise shard writes of one job (PostgreSQL row lock; SQLite writers are serial already).

        Every transaction that writes a job and its shards locks the job first (cancel, finish, outcomes,
        progress): taken the other way round, two of them deadlock and PostgreSQL aborts one.
        """
        query = select(J).where(J.c.job_id == job_id)
        if self.db.dialect == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).first()

    def succeed_shard(self, job_id: str, shard: int, attempt: int, *, summary: dict[str, Any]) -> bool:
        """Mark the shard done; return True when this made every shard of the job succeed."""
        with self.db.tx() as conn:
            self._lock_parent(conn, job_id)
            res = conn.execute(
                update(S)
                .where(*self._shard_running(job_id, shard, attempt))
                .values(
                    status="succeeded", finished_at=utcnow(), summary=summary, rows_done=S.c.row_stop - S.c.row_start
                )
            )
            if res.rowcount != 1:
                raise JobCancelled(f"job {job_id} shard {shard} attempt {attempt} is no longer running")
            return self._all_succeeded(conn, job_id)

    @staticmethod
    def _all_succeeded(conn: Connection, job_id: str) -> bool:
        left = conn.execute(
            select(func.count()).select_from(S).where(S.c.job_id == job_id, S.c.status != "succeeded")
        ).scalar_one()
        return left == 0

    def fail_shard(self, job_id: str, shard: int, attempt: int, code: str, message: str) -> bool:
        """A shard failed for good (bad data, an exception): the shard and its parent fail."""
        with self.db.tx() as conn:
            parent = self._lock_parent(conn, job_id)
            res = conn.execute(
                update(S)
                .where(*self._shard_running(job_id, shard, attempt))
                .values(status="failed", finished_at=utcnow(), error={"code": code, "message": message})
            )
            if res.rowcount != 1 or parent is None:
                return False
            finish(conn, parent, "failed", {"code": code, "message": f"shard {shard}: {message}"})
            return True

    def shard_lost(self, job_id: str, shard: int, attempt: int, code: str, message: str) -> str | None:
        """A shard's worker vanished: requeue the shard alone while it has attempts left, else fail the job."""
        with self.db.tx() as conn:
            parent = self._lock_parent(conn, job_id)
            row = conn.execute(select(S).where(*self._shard_running(job_id, shard, attempt))).first()
            if row is None or parent is None:
                return None
            if row.attempt < parent.max_attempts:
                conn.execute(
                    update(S)
                    .where(S.c.job_id == job_id, S.c.shard == shard)
                    .values(
                        status="queued",
                        worker=None,
                        rows_done=0,
                        error={"code": code, "message": f"attempt {row.attempt}: {message}; retrying"},
                    )
                )
                logger.warning("job %s shard %s attempt %s lost (%s); shard requeued", job_id, shard, attempt, message)
                return "queued"
            conn.execute(
                update(S)
                .where(S.c.job_id == job_id, S.c.shard == shard)
                .values(status="failed", finished_at=utcnow(), error={"code": code, "message": message})
            )
            finish(conn, parent, "failed", {"code": code, "message": f"shard {shard}: {message}"})
            logger.warning("job %s shard %s attempt %s lost (%s); job failed", job_id, shard, attempt, message)
            return "failed"

    def stale_shards(self, timeout_seconds: float) -> list[tuple[str, int, int]]:
        """Running shards of running jobs whose last heartbeat is older than ``timeout_seconds``."""
        return self._running_before(S.c.heartbeat_at, timeout_seconds)

    def overdue_shards(self, deadline_seconds: float) -> list[tuple[str, int, int]]:
        """Running shards of running jobs whose current attempt started more than ``deadline_seconds`` ago."""
        return self._running_before(S.c.started_at, deadline_seconds)

    def _running_before(self, column, seconds: float) -> list[tuple[str, int, int]]:
        cutoff = utcnow() - timedelta(seconds=seconds)
        with self.db.ro() as conn:
            return [
                (r.job_id, r.shard, r.attempt)
                for r in conn.execute(
                    select(S.c.job_id, S.c.shard, S.c.attempt)
                    .join(J, J.c.job_id == S.c.job_id)
                    .where(S.c.status == "running", column < cutoff, J.c.status == "running")
                )
            ]

    def completed_sharded_jobs(self) -> list[str]:
        """Running sharded jobs whose shards all succeeded but that nobody finalized yet (a worker died between)."""
        pending = select(S.c.job_id).where(S.c.job_id == J.c.job_id, S.c.status != "succeeded").exists()
        with self.db.ro() as conn:
            return list(
                conn.execute(
                    select(J.c.job_id).where(J.c.status == "running", J.c.shards.is_not(None), ~pending)
                ).scalars()
            )

    def shard_summaries(self, job_id: str) -> list[dict[str, Any]]:
        with self.db.ro() as conn:
            return [
                s or {}
                for s in conn.execute(select(S.c.summary).where(S.c.job_id == job_id).order_by(S.c.shard)).scalars()
            ]
