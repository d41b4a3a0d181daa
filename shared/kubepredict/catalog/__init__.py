"""The catalogue: datasets, models, jobs, predictions, outbox, idempotency keys (SQLAlchemy)."""

from __future__ import annotations

from .base import CatalogBase
from .datasets import DatasetsRepo
from .engine import make_engines
from .jobs import JobsRepo
from .models import ModelsRepo
from .outbox import OutboxRepo
from .predictions import PredictionsRepo
from .shards import ShardsRepo


class Catalog(DatasetsRepo, ModelsRepo, JobsRepo, ShardsRepo, PredictionsRepo, OutboxRepo, CatalogBase):
    """All repositories over one database."""


def open_catalog(url: str, *, create: bool = True) -> Catalog:
    """Open the catalogue at ``url`` (``sqlite:///…`` or ``postgresql://…``), migrating the schema if asked."""
    write, read = make_engines(url)
    catalog = Catalog(write, read)
    if create:
        catalog.create_schema()
    return catalog


__all__ = ["Catalog", "open_catalog"]
