"""Upload, list, show and delete datasets."""

from __future__ import annotations

import logging
from typing import BinaryIO

from ..errors import InvalidInput
from ..ids import new_id
from . import ingest

logger = logging.getLogger(__name__)
MAX_NAME = 200


def clean_name(name: str | None, default: str) -> str:
    name = (name or "").strip() or default
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name is longer than {MAX_NAME} characters", code="invalid_name")
    return name


def upload_dataset(svc, stream: BinaryIO, *, name: str | None) -> dict:
    """Store the raw CSV (hashed on the way in), parse it, keep a Parquet copy, record it with its event."""
    dataset_id = new_id("ds")
    name = clean_name(name, dataset_id)
    raw_key, pq_key = f"datasets/{dataset_id}/data.csv", f"datasets/{dataset_id}/data.parquet"
    stored = svc.storage.put(raw_key, stream, max_bytes=svc.settings.max_upload_bytes)
    try:
        if stored.size == 0:
            raise InvalidInput("the request body is empty; send a CSV file", code="empty_body")
        with svc.storage.open(raw_key) as f:
            frame = ingest.parse_csv(f)
        svc.storage.put_bytes(pq_key, ingest.to_parquet_bytes(frame))
        view = svc.catalog.add_dataset(
            dataset_id=dataset_id, name=name, rows=len(frame), size_bytes=stored.size, sha256=stored.sha256,
            columns=ingest.describe_columns(frame), preview=ingest.preview(frame),
            object_key=raw_key, parquet_key=pq_key)
    except BaseException:
        # Nothing half-written: no catalogue row means no objects either.
        for key in (raw_key, pq_key):
            try:
                svc.storage.delete(key)
            except Exception:  # noqa: BLE001 - cleanup must not hide the real error
                logger.warning("could not remove %s after a failed upload", key)
        raise
    logger.info("dataset %s uploaded: %s rows, %s bytes", dataset_id, view["rows"], view["size_bytes"])
    return view


def delete_dataset(svc, dataset_id: str) -> None:
    row = svc.catalog.delete_dataset(dataset_id)
    for key in (row.object_key, row.parquet_key):
        svc.storage.delete(key)


def load_frame(svc, dataset_row, columns: list[str] | None = None):
    with svc.storage.open(dataset_row.parquet_key) as f:
        return ingest.read_parquet(f, columns=columns)
