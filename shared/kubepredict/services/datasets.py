"""Upload, list, show and delete datasets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import InvalidInput
from ..ids import new_id
from ..storage.base import disk_full_is_507
from . import ingest, ingest_stream

if TYPE_CHECKING:
    import pyarrow.parquet as pq

logger = logging.getLogger(__name__)
MAX_NAME = 200


def clean_name(name: str | None, default: str) -> str:
    name = (name or "").strip() or default
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name is longer than {MAX_NAME} characters", code="invalid_name")
    return name


def upload_dataset(svc, stream: BinaryIO, *, name: str | None) -> dict:
    """Parse the CSV body in one streaming pass (hashing and spooling the raw bytes, writing the Parquet
    copy in row groups), store both objects, record the dataset with its event."""
    dataset_id = new_id("ds")
    name = clean_name(name, dataset_id)
    raw_key, pq_key = f"datasets/{dataset_id}/data.csv", f"datasets/{dataset_id}/data.parquet"
    raw_path, pq_path = svc.storage.staging_file(), svc.storage.staging_file()
    try:
        first = stream.read(1)
        if not first:
            raise InvalidInput("the request body is empty; send a CSV file", code="empty_body")
        with disk_full_is_507("the server's disk"):  # what the store did not already say was full
            parsed = ingest_stream.ingest_csv(
                _Prepend(first, stream),
                raw_path=Path(raw_path),
                parquet_path=Path(pq_path),
                parquet_cached=svc.storage.reads_staged_files,
                max_bytes=svc.settings.max_upload_bytes,
            )
            svc.storage.put_file(raw_key, raw_path, sha256=parsed.sha256)
            svc.storage.put_file(pq_key, pq_path, hashed=False)
        view = svc.catalog.add_dataset(
            dataset_id=dataset_id,
            name=name,
            rows=parsed.rows,
            size_bytes=parsed.size,
            sha256=parsed.sha256,
            columns=parsed.columns,
            preview=parsed.preview,
            object_key=raw_key,
            parquet_key=pq_key,
        )
    except BaseException:
        # Nothing half-written: no catalogue row means no objects either.
        for path in (raw_path, pq_path):
            Path(path).unlink(missing_ok=True)
        for key in (raw_key, pq_key):
            try:
                svc.storage.delete(key)
            except Exception:  # noqa: BLE001 - cleanup must not hide the real error
                logger.warning("could not remove %s after a failed upload", key)
        raise
    logger.info("dataset %s uploaded: %s rows, %s bytes", dataset_id, view["rows"], view["size_bytes"])
    return view


class _Prepend(io.RawIOBase):
    """``first`` then the rest of ``stream``."""

    def __init__(self, first: bytes, stream: BinaryIO):
        self._first, self._stream = first, stream

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._first:
            if n is not None and 0 <= n < len(self._first):
                out, self._first = self._first[:n], self._first[n:]
                return out
            out, self._first = self._first, b""
            rest = self._stream.read(n - len(out)) if n is not None and n > len(out) else b""
            return out + rest if n is None or n < 0 or rest else out
        return self._stream.read(n)

    def readinto(self, b) -> int:
        if not self._first:
            return ingest.read_into(self._stream, b)
        chunk = self.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def delete_dataset(svc, dataset_id: str) -> None:
    row = svc.catalog.delete_dataset(dataset_id)
    for key in (row.object_key, row.parquet_key):
        svc.storage.delete(key)


def load_frame(svc, dataset_row, columns: list[str] | None = None):
    """The dataset's Parquet copy (``columns`` of it) as a frame.

    Read through ranged reads: Arrow fetches the column chunks it decodes, coalesced and several at once,
    straight into its own buffers. From S3 that is ~5x faster than downloading the object to a spooled
    temp file first (0.18 vs 0.94 s for 1M x 21 floats from S3Proxy here), and a few columns fetch only
    theirs; a local file is read the same way."""
    with svc.storage.open_ranged(dataset_row.parquet_key) as f:
        return ingest.read_parquet(f, columns=columns)


@contextmanager
def open_parquet(svc, dataset_row) -> Iterator[pq.ParquetFile]:
    """The dataset's Parquet copy for batch or row-group reads (``iter_batches(row_groups=…)``), fetching
    only the byte ranges read (``Storage.open_ranged``, coalesced per row group): a shard reads its few
    row groups, not the whole file."""
    import pyarrow.parquet as pq

    with svc.storage.open_ranged(dataset_row.parquet_key) as f:
        yield pq.ParquetFile(f, pre_buffer=True)  # coalesced reads: few ranged GETs per row group
