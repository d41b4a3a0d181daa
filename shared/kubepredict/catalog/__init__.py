"""The catalogue: datasets, models, jobs, predictions, outbox, idempotency keys (SQLAlchemy).

One ``Database`` (engines, transactions, dialect) and one repository per table group, each built
around it: ``catalog.jobs.claim_next(…)``, ``catalog.models.get_model_row(…)``. Reads return small
frozen records (``records.py``: JSON fields decoded) or, for the API, their public views (dicts).
The repositories' verbs are also reachable on ``Catalog`` itself under their names, as callers have
always called them (``catalog.claim_next(…)``).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from .aliases import AliasesRepo
from .database import Database
from .datasets import DatasetsRepo
from .engine import make_engines
from .heads import HeadReader
from .jobs import JobsRepo, NewJob, NewModel
from .models import ModelsRepo
from .outbox import OutboxRepo, emit
from .predictions import PredictionsRepo
from .records import DatasetRecord, JobRecord, ModelRecord, ShardRecord
from .shards import ShardsRepo


class Catalog:
    """All repositories over one database."""

    def __init__(self, write_engine: Engine, read_engine: Engine | None = None):
        self.db = db = Database(write_engine, read_engine)
        self.datasets = DatasetsRepo(db)
        self.models = ModelsRepo(db)
        self.aliases = AliasesRepo(db)
        self.jobs = JobsRepo(db)
        self.shards = ShardsRepo(db)
        self.predictions = PredictionsRepo(db)
        self.outbox = OutboxRepo(db)
        # Every verb also under its own name on the catalogue, as callers have always called them.
        self.tx = db.tx
        self.ro = db.ro
        self.singleton = db.singleton
        self.ping = db.ping
        self.create_schema = db.create_schema
        self.dispose = db.dispose
        self.emit = emit  # an outbox write inside a caller's transaction
        self.add_dataset = self.datasets.add_dataset
        self.get_dataset = self.datasets.get_dataset
        self.get_dataset_row = self.datasets.get_dataset_row
        self.list_datasets = self.datasets.list_datasets
        self.delete_dataset = self.datasets.delete_dataset
        self.dataset_ids = self.datasets.dataset_ids
        self.get_model = self.models.get_model
        self.get_model_row = self.models.get_model_row
        self.list_models = self.models.list_models
        self.delete_model = self.models.delete_model
        self.model_ids = self.models.model_ids
        self.failed_model_ids = self.models.failed_model_ids
        self.enqueue = self.jobs.enqueue
        self.count_jobs = self.jobs.count_jobs
        self.get_job = self.jobs.get_job
        self.get_job_row = self.jobs.get_job_row
        self.list_jobs = self.jobs.list_jobs
        self.claim = self.jobs.claim
        self.queued_job_ids = self.jobs.queued_job_ids
        self.claim_next = self.jobs.claim_next
        self.set_worker = self.jobs.set_worker
        self.heartbeat = self.jobs.heartbeat
        self.progress = self.jobs.progress
        self.succeed_train = self.jobs.succeed_train
        self.succeed_predict = self.jobs.succeed_predict
        self.fail = self.jobs.fail
        self.lost = self.jobs.lost
        self.cancel = self.jobs.cancel
        self.stale_running = self.jobs.stale_running
        self.overdue_running = self.jobs.overdue_running
        self.statuses = self.jobs.statuses
        self.drop_failed_predictions = self.jobs.drop_failed_predictions
        self.list_shards = self.shards.list_shards
        self.get_shard_row = self.shards.get_shard_row
        self.shard_statuses = self.shards.shard_statuses
        self.claim_shards = self.shards.claim_shards
        self.claim_shard_attempt = self.shards.claim_shard_attempt
        self.set_shard_worker = self.shards.set_shard_worker
        self.shard_heartbeat = self.shards.shard_heartbeat
        self.shard_progress = self.shards.shard_progress
        self.succeed_shard = self.shards.succeed_shard
        self.fail_shard = self.shards.fail_shard
        self.shard_lost = self.shards.shard_lost
        self.stale_shards = self.shards.stale_shards
        self.overdue_shards = self.shards.overdue_shards
        self.completed_sharded_jobs = self.shards.completed_sharded_jobs
        self.shard_summaries = self.shards.shard_summaries
        self.clear_predictions = self.predictions.clear_predictions
        self.clear_shard_predictions = self.predictions.clear_shard_predictions
        self.insert_prediction_batch = self.predictions.insert_prediction_batch
        self.count_predictions = self.predictions.count_predictions
        self.page_predictions = self.predictions.page_predictions
        self.iter_prediction_tables = self.predictions.iter_prediction_tables
        self.iter_predictions = self.predictions.iter_predictions
        self.failed_jobs_with_predictions = self.predictions.failed_jobs_with_predictions
        self.pending_events = self.outbox.pending_events
        self.mark_sent = self.outbox.mark_sent
        self.pending_count = self.outbox.pending_count
        self.events_for = self.outbox.events_for

    # The engines and dialect live on the database (tests swap an engine to simulate an outage).
    @property
    def engine(self) -> Engine:
        return self.db.engine

    @engine.setter
    def engine(self, value: Engine) -> None:
        self.db.engine = value

    @property
    def read_engine(self) -> Engine:
        return self.db.read_engine

    @read_engine.setter
    def read_engine(self, value: Engine) -> None:
        self.db.read_engine = value

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def heads(self) -> HeadReader:
        return self.models.heads


def open_catalog(url: str, *, create: bool = True) -> Catalog:
    """Open the catalogue at ``url`` (``sqlite:///…`` or ``postgresql://…``), migrating the schema if asked."""
    write, read = make_engines(url)
    catalog = Catalog(write, read)
    if create:
        catalog.create_schema()
    return catalog


__all__ = [
    "Catalog",
    "Database",
    "DatasetRecord",
    "JobRecord",
    "ModelRecord",
    "NewJob",
    "NewModel",
    "ShardRecord",
    "open_catalog",
]
