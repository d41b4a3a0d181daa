"""The catalogue's tables (SQLAlchemy Core). Alembic migrations are generated from this metadata."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class JSONText(TypeDecorator[Any]):
    """A JSON value stored as TEXT (the columns' type since the first migration, on SQLite and PostgreSQL).

    Bound values are encoded (compact, no NaN: strict JSON) and read values decoded here, once, so
    nothing outside the catalogue sees JSON text; Python ``None`` is SQL NULL, as before.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), allow_nan=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


metadata = MetaData()
#: The statuses of a job (or shard) that is not over yet.
ACTIVE = ("queued", "running")

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("columns", JSONText, nullable=False),  # JSON list of {name, dtype, missing, unique}
    Column("preview", JSONText, nullable=False),  # JSON list of the first rows
    Column("object_key", String(300), nullable=False),
    Column("parquet_key", String(300), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("model_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("task", String(20), nullable=False),
    Column("algorithm", String(200), nullable=False),
    Column("estimator", String(200)),
    Column("params", JSONText, nullable=False),
    Column("features", JSONText),
    Column("kinds", JSONText),
    Column("target", String(200)),
    Column("dataset_id", String(40), nullable=False),
    Column("metrics", JSONText),
    Column("classes", JSONText),
    Column("artifact_key", String(300)),
    Column("artifact_sha256", String(64)),
    Column("job_id", String(40)),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("name", "version", name="uq_models_name_version"),
)

# A name's aliases (``champion``, ``staging``…): each points at one version (model) of that name. The
# primary key makes an alias unique per name; moves are compare-and-set updates (catalog/aliases.py).
model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("model_id", String(40), ForeignKey("models.model_id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
Index("ix_model_aliases_model", model_aliases.c.model_id)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("status", String(12), nullable=False),
    Column("stage", String(40)),
    Column("progress", Float, nullable=False, default=0.0),
    Column("model_id", String(40)),
    Column("dataset_id", String(40)),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=1),
    Column("request", JSONText, nullable=False),
    Column("error", JSONText),
    Column("metrics", JSONText),
    Column("summary", JSONText),
    Column("worker", String(200)),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("heartbeat_at", DateTime),
    Column("rows", BigInteger),  # rows scored by a succeeded predict job (summed for metrics)
    Column("shards", Integer),  # a sharded predict job: how many shards (rows in job_shards); NULL = one worker
)
Index("ix_jobs_status_created", jobs.c.status, jobs.c.created_at)
Index("ix_jobs_dataset", jobs.c.dataset_id)

# One row per scored batch of a prediction job: rows first_row … first_row + rows - 1, their predictions
# and probabilities as a compressed Arrow IPC stream (see catalog/predictions.py).
prediction_batches = Table(
    "prediction_batches",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("first_row", BigInteger, primary_key=True, autoincrement=False),
    Column("rows", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# One row per shard of a sharded predict job: its input rows [row_start, row_stop) and its own
# claim/attempt/heartbeat, so a shard that dies is retried alone. The parent job row is what users see.
job_shards = Table(
    "job_shards",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("row_start", BigInteger, nullable=False),
    Column("row_stop", BigInteger, nullable=False),
    Column("status", String(12), nullable=False),  # queued | running | succeeded | failed | cancelled
    Column("attempt", Integer, nullable=False, default=0),
    Column("rows_done", BigInteger, nullable=False, default=0),
    Column("worker", String(200)),
    Column("heartbeat_at", DateTime),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("error", JSONText),
    Column("summary", JSONText),  # JSON: the shard's class counts (classifiers), merged into the parent's summary
)
Index("ix_job_shards_status", job_shards.c.status)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(80), nullable=False),
    Column("key", String(80), nullable=False),  # Kafka key: the job or dataset id
    Column("payload", Text, nullable=False),  # the whole CloudEvent, JSON
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
)
Index("ix_outbox_pending", outbox.c.sent_at, outbox.c.seq)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("job_id", String(40), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# Function calls counted where the calling process cannot keep counters (Kubeless: one child process
# per call). One row per function, status code and duration bucket (``le`` = the bucket's upper
# bound, not cumulative); bounded by functions x codes x buckets, read by the metrics collector.
invocations = Table(
    "invocations",
    metadata,
    Column("function_name", String(40), primary_key=True),
    Column("code", String(3), primary_key=True),
    Column("le", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("sum_seconds", Float, nullable=False),
)
