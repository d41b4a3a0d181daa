"""Jobs repository: queueing, atomic claims, progress, outcomes — each state change with its event."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, NotRequired, TypedDict

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, InsufficientStorage, JobCancelled, JobNotFound
from ..ids import utcnow
from . import schema
from .aliases import apply_decision
from .database import Database
from .outbox import emit
from .records import JobRecord, ShardRecord

logger = logging.getLogger(__name__)
J, M, S = schema.jobs, schema.models, schema.job_shards
FINISHED = ("succeeded", "failed", "cancelled")


class NewJob(TypedDict):
    """A job to queue (``enqueue``); ``request`` is the validated body its worker runs."""

    job_id: str
    kind: str
    max_attempts: int
    request: dict[str, Any]
    model_id: NotRequired[str | None]
    dataset_id: NotRequired[str | None]


class NewModel(TypedDict):
    """The model a training job creates, queued with it (status "training" until the job succeeds)."""

    model_id: str
    name: str
    task: str | None
    algorithm: str
    params: dict[str, Any]
    features: list[str]
    target: str | None
    dataset_id: str
    job_id: str


def _event_data(row: Row[Any], **extra: Any) -> dict[str, Any]:
    data = {
        "job_id": row.job_id,
        "kind": row.kind,
        "model_id": row.model_id,
        "dataset_id": row.dataset_id,
        "attempt": row.attempt,
    }
    data.update(extra)
    return data


def _job(conn: Connection, job_id: str) -> Row[Any]:
    return conn.execute(select(J).where(J.c.job_id == job_id)).one()


def _drift_event(row: Row[Any], drift: dict[str, Any]) -> dict[str, Any]:
    """``model.drift_detected``'s data: the job, its model, and the features whose PSI passed the threshold."""
    threshold = drift.get("threshold")
    drifted = [
        {"feature": f["feature"], "psi": f["psi"]}
        for f in drift.get("features", [])
        if f.get("psi") is not None and threshold is not None and f["psi"] > threshold
    ]
    return {
        "job_id": row.job_id,
        "model_id": row.model_id,
        "dataset_id": row.dataset_id,
        "threshold": threshold,
        "max_psi": drift.get("max_psi"),
        "features": drifted,
        "prediction_psi": (drift.get("prediction") or {}).get("psi"),
    }


def cancel_shards(conn: Connection, job_id: str) -> None:
    """Cancel the job's shards that are not over yet (its parent finished)."""
    conn.execute(
        update(S)
        .where(and_(S.c.job_id == job_id, S.c.status.in_(schema.ACTIVE)))
        .values(status="cancelled", finished_at=utcnow())
    )


def finish(
    conn: Connection, row: Row[Any], status: str, error: dict[str, Any] | None, *, drop_predictions: bool = True
) -> None:
    """End job ``row`` as ``status`` (its shards cancelled, a training job's model failed), with its event.

    A failed predict job keeps no partial predictions, unless ``drop_predictions`` is False (a full disk).
    """
    conn.execute(
        update(J).where(J.c.job_id == row.job_id).values(status=status, finished_at=utcnow(), error=error, stage=status)
    )
    if status == "failed" and row.kind == "predict" and drop_predictions:
        # A failed job keeps no partial predictions (what its batches wrote before the failure).
        conn.execute(delete(schema.prediction_batches).where(schema.prediction_batches.c.job_id == row.job_id))
    if row.shards:
        cancel_shards(conn, row.job_id)  # a finished job has no shard left to run
    if row.kind == "train" and row.model_id:
        conn.execute(update(M).where(M.c.model_id == row.model_id).values(status="failed"))
    emit(conn, f"job.{status}", row.job_id, _event_data(_job(conn, row.job_id), error=error))


def _claimed(now, worker: str | None) -> dict:
    """The columns a claim sets: running, the next attempt, fresh timestamps and no error."""
    return {
        "status": "running",
        "attempt": J.c.attempt + 1,
        "started_at": now,
        "heartbeat_at": now,
        "stage": "starting",
        "progress": 0.0,
        "worker": worker,
        "error": None,
    }


class JobsRepo:
    def __init__(self, db: Database):
        self.db = db

    # ---- queueing -------------------------------------------------------------------------
    def enqueue(
        self,
        *,
        job: NewJob,
        model: NewModel | None = None,
        idempotency: tuple[str, str] | None = None,
        shards: list[tuple[int, int]] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Insert a queued job (and its model for training) plus ``job.queued``; return ``(job, created)``.

        With an idempotency ``(scope, key)`` seen before, nothing is inserted and the earlier job is returned.
        ``shards``: the row ranges ``[start, stop)`` of a sharded predict job, one queued shard each.
        """
        for _ in range(10):
            try:
                with self.db.tx() as conn:
                    if idempotency:
                        found = conn.execute(
                            select(schema.idempotency_keys.c.job_id).where(
                                schema.idempotency_keys.c.scope == idempotency[0],
                                schema.idempotency_keys.c.key == idempotency[1],
                            )
                        ).first()
                        if found:
                            return JobRecord.of(_job(conn, found.job_id)).view(), False
                        conn.execute(
                            schema.idempotency_keys.insert().values(
                                scope=idempotency[0], key=idempotency[1], job_id=job["job_id"], created_at=utcnow()
                            )
                        )
                    now = utcnow()
                    if model is not None:
                        version = (
                            conn.execute(
                                select(func.coalesce(func.max(M.c.version), 0)).where(M.c.name == model["name"])
                            ).scalar_one()
                            + 1
                        )
                        conn.execute(M.insert().values(**model, version=version, status="training", created_at=now))
                    conn.execute(
                        J.insert().values(
                            **job,
                            status="queued",
                            progress=0.0,
                            stage="queued",
                            attempt=0,
                            created_at=now,
                            shards=len(shards) if shards else None,
                        )
                    )
                    if shards:
                        conn.execute(
                            schema.job_shards.insert(),
                            [
                                {
                                    "job_id": job["job_id"],
                                    "shard": i,
                                    "row_start": a,
                                    "row_stop": b,
                                    "status": "queued",
                                    "attempt": 0,
                                    "rows_done": 0,
                                }
                                for i, (a, b) in enumerate(shards)
                            ],
                        )
                    row = _job(conn, job["job_id"])
                    emit(conn, "job.queued", row.job_id, _event_data(row))
                    return JobRecord.of(row).view(), True
            except IntegrityError:
                logger.info("retrying enqueue of %s after a concurrent insert", job["job_id"])
        raise Conflict("could not queue the job after concurrent retries; try again")

    def count_jobs(self, *, status: str | None = None, kind: str | None = None) -> int:
        where = [
            c
            for c in ((J.c.status == status) if status else None, (J.c.kind == kind) if kind else None)
            if c is not None
        ]
        with self.db.ro() as conn:
            return int(conn.execute(select(func.count()).select_from(J).where(*where)).scalar_one())

    # ---- reads ----------------------------------------------------------------------------
    def get_job_row(self, job_id: str) -> JobRecord:
        with self.db.ro() as conn:
            row = conn.execute(select(J).where(J.c.job_id == job_id)).first()
        if row is None:
            raise JobNotFound(f"no job with id {job_id}", details={"job_id": job_id})
        return JobRecord.of(row)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job's public view; a sharded job's with ``shard_status``, one entry per shard."""
        job = self.get_job_row(job_id)
        view = job.view()
        if job.shards:
            with self.db.ro() as conn:
                shards = conn.execute(
                    select(S, J.c.kind)
                    .join(J, J.c.job_id == S.c.job_id)
                    .where(S.c.job_id == job_id)
                    .order_by(S.c.shard)
                ).all()
            view["shard_status"] = [ShardRecord.of(s).view() for s in shards]
        return view

    def list_jobs(
        self, *, kind: str | None = None, status: str | None = None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        where = [
            c
            for c in ((J.c.kind == kind) if kind else None, (J.c.status == status) if status else None)
            if c is not None
        ]
        with self.db.ro() as conn:
            total = conn.execute(select(func.count()).select_from(J).where(*where)).scalar_one()
            rows = conn.execute(
                select(J).where(*where).order_by(J.c.created_at.desc(), J.c.job_id).limit(limit).offset(offset)
            ).all()
        return [JobRecord.of(r).listed() for r in rows], total

    # ---- claims ---------------------------------------------------------------------------
    def claim(self, job_id: str, *, worker: str | None = None) -> JobRecord | None:
        """Atomically move a queued job to running (attempt + 1, ``job.started``); None if someone else won."""
        now = utcnow()
        with self.db.tx() as conn:
            res = conn.execute(
                update(J).where(J.c.job_id == job_id, J.c.status == "queued").values(**_claimed(now, worker))
            )
            if res.rowcount != 1:
                return None
            row = _job(conn, job_id)
            emit(conn, "job.started", job_id, _event_data(row))
            return JobRecord.of(row)

    def queued_job_ids(self, limit: int) -> list[str]:
        with self.db.ro() as conn:
            return list(
                conn.execute(
                    select(J.c.job_id).where(J.c.status == "queued").order_by(J.c.created_at, J.c.job_id).limit(limit)
                ).scalars()
            )

    def claim_next(self, limit: int, *, worker: str | None = None) -> list[JobRecord]:
        """Claim up to ``limit`` queued jobs, oldest first."""
        if limit <= 0:
            return []
        if self.db.dialect == "postgresql":
            return self._claim_next_skip_locked(limit, worker)
        claimed: list[JobRecord] = []
        # Re-read the queue until enough jobs are claimed or none is left: rows another dispatcher
        # took in between are simply skipped (their conditional UPDATE matched nothing).
        while len(claimed) < limit:
            ids = self.queued_job_ids(limit - len(claimed))
            if not ids:
                break
            for job_id in ids:
                row = self.claim(job_id, worker=worker)
                if row is not None:
                    claimed.append(row)
        return claimed

    def _claim_next_skip_locked(self, limit: int, worker: str | None) -> list[JobRecord]:
        """PostgreSQL: lock the oldest queued rows other dispatchers are not holding, and claim them."""
        now = utcnow()
        with self.db.tx() as conn:
            ids = list(
                conn.execute(
                    select(J.c.job_id)
                    .where(J.c.status == "queued")
                    .order_by(J.c.created_at, J.c.job_id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return []
            conn.execute(update(J).where(J.c.job_id.in_(ids), J.c.status == "queued").values(**_claimed(now, worker)))
            rows = conn.execute(select(J).where(J.c.job_id.in_(ids)).order_by(J.c.created_at, J.c.job_id)).all()
            for row in rows:
                emit(conn, "job.started", row.job_id, _event_data(row))
            return [JobRecord.of(r) for r in rows]

    def set_worker(self, job_id: str, attempt: int, worker: str) -> None:
        with self.db.tx() as conn:
            conn.execute(update(J).where(J.c.job_id == job_id, J.c.attempt == attempt).values(worker=worker))

    # ---- progress -------------------------------------------------------------------------
    @staticmethod
    def _running(job_id: str, attempt: int) -> tuple[Any, ...]:
        return (J.c.job_id == job_id, J.c.attempt == attempt, J.c.status == "running")

    def heartbeat(self, job_id: str, attempt: int) -> bool:
        """Touch the heartbeat; False when the job is no longer ours to run (cancelled, lost, finished)."""
        with self.db.tx() as conn:
            return (
                conn.execute(update(J).where(*self._running(job_id, attempt)).values(heartbeat_at=utcnow())).rowcount
                == 1
            )

    def progress(self, job_id: str, attempt: int, stage: str, progress: float) -> None:
        with self.db.tx() as conn:
            res = conn.execute(
                update(J)
                .where(*self._running(job_id, attempt))
                .values(stage=stage, progress=max(0.0, min(1.0, float(progress))), heartbeat_at=utcnow())
            )
        if res.rowcount != 1:
            raise JobCancelled(f"job {job_id} attempt {attempt} is no longer running")

    # ---- outcomes -------------------------------------------------------------------------
    def succeed_train(
        self,
        job_id: str,
        attempt: int,
        *,
        model_id: str,
        model_fields: dict[str, Any],
        promotion: tuple[dict[str, Any], str | None] | None = None,
    ) -> None:
        """Mark the job succeeded and its model ready (``model.ready``); with ``promotion`` — a gate decision and
        the alias holder it was made against — commit that decision too (AliasMoved: nothing changed)."""
        with self.db.tx() as conn:
            self._succeed(
                conn,
                job_id,
                attempt,
                metrics=model_fields.get("metrics"),
                summary={"promotion": promotion[0]} if promotion else None,
            )
            conn.execute(update(M).where(M.c.model_id == model_id).values(status="ready", **model_fields))
            row = _job(conn, job_id)
            emit(conn, "job.succeeded", job_id, _event_data(row))
            mrow = conn.execute(select(M).where(M.c.model_id == model_id)).one()
            emit(
                conn,
                "model.ready",
                job_id,
                {
                    "model_id": model_id,
                    "name": mrow.name,
                    "version": mrow.version,
                    "task": mrow.task,
                    "algorithm": mrow.algorithm,
                    "job_id": job_id,
                },
            )
            if promotion is not None:
                apply_decision(conn, mrow.name, promotion[0], promotion[1])

    def _succeed(self, conn, job_id: str, attempt: int, **fields) -> None:
        """Mark the running attempt succeeded with ``fields`` (metrics, summary, rows); JobCancelled when
        it is not running any more (cancelled, or requeued without this worker)."""
        res = conn.execute(
            update(J)
            .where(*self._running(job_id, attempt))
            .values(status="succeeded", stage="done", progress=1.0, finished_at=utcnow(), **fields)
        )
        if res.rowcount != 1:
            raise JobCancelled(f"job {job_id} attempt {attempt} is no longer running")

    def succeed_predict(self, job_id: str, attempt: int, *, summary: dict[str, Any]) -> None:
        with self.db.tx() as conn:
            self._succeed(conn, job_id, attempt, summary=summary, rows=summary.get("rows"))
            row = _job(conn, job_id)
            emit(conn, "job.succeeded", job_id, _event_data(row, summary={"rows": summary.get("rows")}))
            drift = summary.get("drift") or {}
            if drift.get("detected"):
                emit(conn, "model.drift_detected", job_id, _drift_event(row, drift))

    def fail(self, job_id: str, attempt: int, code: str, message: str) -> bool:
        """Record a failure the worker itself observed (bad data, an exception)."""
        try:
            return self._fail(job_id, attempt, code, message, drop_predictions=True)
        except InsufficientStorage:
            # On a full disk even deleting needs a little room: record the failure first; the failed job's
            # predictions go with the next predict job's clean slate (clear_predictions) or orphan sweep.
            logger.warning("job %s: disk full; failed without dropping its partial predictions yet", job_id)
            return self._fail(job_id, attempt, code, message, drop_predictions=False)

    def _fail(self, job_id: str, attempt: int, code: str, message: str, *, drop_predictions: bool) -> bool:
        with self.db.tx() as conn:
            row = conn.execute(select(J).where(*self._running(job_id, attempt))).first()
            if row is None:
                return False
            finish(conn, row, "failed", {"code": code, "message": message}, drop_predictions=drop_predictions)
            return True

    def drop_failed_predictions(self) -> int:
        """Delete prediction batches of failed jobs (left when a full disk refused the delete); returns how
        many batches went."""
        B = schema.prediction_batches
        with self.db.tx() as conn:
            failed = select(J.c.job_id).where(J.c.status == "failed", J.c.kind == "predict")
            return conn.execute(delete(B).where(B.c.job_id.in_(failed))).rowcount or 0

    def lost(self, job_id: str, attempt: int, code: str, message: str) -> str | None:
        """A worker vanished: requeue while attempts remain, else fail. Returns the new status or None."""
        with self.db.tx() as conn:
            row = conn.execute(select(J).where(*self._running(job_id, attempt))).first()
            if row is None:
                return None
            if row.attempt < row.max_attempts and not row.shards:  # shards retry themselves, one by one
                conn.execute(
                    update(J)
                    .where(J.c.job_id == job_id)
                    .values(
                        status="queued",
                        stage="requeued",
                        progress=0.0,
                        worker=None,
                        error={"code": code, "message": f"attempt {row.attempt}: {message}; retrying"},
                    )
                )
                logger.warning("job %s attempt %s lost (%s); requeued", job_id, attempt, message)
                return "queued"
            finish(conn, row, "failed", {"code": code, "message": message})
            logger.warning("job %s attempt %s lost (%s); failed", job_id, attempt, message)
            return "failed"

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (409 once it is over); returns its public view."""
        with self.db.tx() as conn:
            row = conn.execute(select(J).where(J.c.job_id == job_id)).first()
            if row is None:
                raise JobNotFound(f"no job with id {job_id}", details={"job_id": job_id})
            if row.status in FINISHED:
                raise Conflict(
                    f"job {job_id} already {row.status}; only queued or running jobs can be cancelled",
                    code="job_finished",
                    details={"status": row.status},
                )
            finish(conn, row, "cancelled", None)
            return JobRecord.of(_job(conn, job_id)).view()

    def stale_running(self, timeout_seconds: float) -> list[tuple[str, int]]:
        cutoff = utcnow() - timedelta(seconds=timeout_seconds)
        with self.db.ro() as conn:
            return [
                (r.job_id, r.attempt)
                for r in conn.execute(
                    select(J.c.job_id, J.c.attempt).where(
                        J.c.status == "running", J.c.heartbeat_at < cutoff, J.c.shards.is_(None)
                    )
                )
            ]  # shards have their own heartbeats

    def overdue_running(self, deadline_seconds: float) -> list[tuple[str, int]]:
        """Running (unsharded) jobs whose current attempt started more than ``deadline_seconds`` ago."""
        cutoff = utcnow() - timedelta(seconds=deadline_seconds)
        with self.db.ro() as conn:
            return [
                (r.job_id, r.attempt)
                for r in conn.execute(
                    select(J.c.job_id, J.c.attempt).where(
                        J.c.status == "running", J.c.started_at < cutoff, J.c.shards.is_(None)
                    )
                )
            ]  # shards are timed one by one

    def statuses(self, job_ids: list[str]) -> dict[str, tuple[str, int]]:
        if not job_ids:
            return {}
        with self.db.ro() as conn:
            return {
                r.job_id: (r.status, r.attempt)
                for r in conn.execute(select(J.c.job_id, J.c.status, J.c.attempt).where(J.c.job_id.in_(job_ids)))
            }
