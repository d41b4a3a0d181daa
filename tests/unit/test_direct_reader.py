"""``DirectReader``: a local file read around the page cache gives back exactly its bytes, at any offset."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubepredict.errors import NotFound
from kubepredict.storage import spool as spool_module
from kubepredict.storage.file import FileStorage
from kubepredict.storage.s3 import S3Storage
from kubepredict.storage.spool import ALIGN, DirectReader, SpoolFile


@pytest.fixture(params=["direct", "plain"])
def mode(request, monkeypatch):
    if request.param == "plain":  # a file system without O_DIRECT (or not Linux): plain reads, same bytes
        monkeypatch.setattr(spool_module, "_O_DIRECT", 0)
    return request.param


def test_reads_at_any_offset_and_length_give_the_file_bytes(tmp_path, mode):
    data = os.urandom(5 * ALIGN * 64 + 1234)  # the end is not block-aligned
    path = tmp_path / "f"
    with SpoolFile(str(path)) as spool:  # written around the cache too, where the file system can
        spool.write(data)
    rng = random.Random(7)
    with DirectReader(str(path)) as reader:
        assert reader.direct == (mode == "direct" and spool_module._O_DIRECT != 0)
        cases = [
            (0, 0),
            (0, 1),
            (ALIGN - 1, 2),
            (ALIGN, ALIGN),
            (len(data) - 1, 10),
            (len(data), 5),
            (len(data) + 9, 5),
        ]
        cases += [(rng.randrange(len(data)), rng.randrange(300_000)) for _ in range(300)]
        for at, n in cases:
            assert reader.seek(at) == at
            got = bytes(reader.read(n))
            assert got == data[at : at + n], (at, n)
            assert reader.tell() == at + len(got)
        reader.seek(-10, os.SEEK_END)
        assert bytes(reader.read()) == data[-10:]
        reader.seek(0)
        assert bytes(reader.read(-1)) == data
        reader.seek(100)
        buffer = bytearray(5000)
        assert reader.readinto(buffer) == 5000 and bytes(buffer) == data[100:5100]
        with pytest.raises(ValueError):
            reader.seek(-1)
    assert reader.closed


def test_a_parquet_file_reads_through_the_store_as_written(tmp_path, mode):
    """What a job reads a dataset's Parquet copy through on a local store: its row groups, exactly."""
    table = pa.table({"x": np.arange(50_000, dtype=np.float64) / 7, "n": np.arange(50_000), "s": ["ab", "c"] * 25_000})
    store = FileStorage(tmp_path / "store")
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=8_000)
    store.put_bytes("datasets/d/data.parquet", sink.getvalue())
    with store.open_ranged("datasets/d/data.parquet") as f:
        parquet = pq.ParquetFile(f, pre_buffer=True)
        assert parquet.metadata.num_row_groups == 7
        assert parquet.read_row_group(3).equals(table.slice(24_000, 8_000))
        assert parquet.read().equals(table)
    with pytest.raises(NotFound):
        store.open_ranged("datasets/d/missing.parquet")


def test_only_a_store_that_reads_staged_files_back_keeps_them_cached():
    """A local store moves a staged Parquet copy into place (written around the cache); S3 reads it back."""
    assert FileStorage.reads_staged_files is False
    assert S3Storage.reads_staged_files is True
