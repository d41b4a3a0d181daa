"""``read_dropping`` gives back exactly a file's bytes from where it stands, read around the page cache by a
helper thread where it can (whole blocks from a block boundary of a local file), plainly otherwise."""

from __future__ import annotations

import os
import threading

import pytest

from kubepredict.storage import spool
from kubepredict.storage.spool import ALIGN, read_dropping


def _direct_possible(path) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0)))
    except OSError:
        return False
    return bool(getattr(os, "O_DIRECT", 0))


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(5 * ALIGN * 16 + 1234)  # not whole blocks: the last chunk ends short
    path = tmp_path / "raw"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def direct_reads(monkeypatch):
    """Counts the chunks read through the direct path."""
    chunks = []
    real = spool._direct_chunks

    def counted(*args):
        for chunk in real(*args):
            chunks.append(chunk.size)
            yield chunk

    monkeypatch.setattr(spool, "_direct_chunks", counted)
    return chunks


@pytest.mark.parametrize(
    "start, size, direct",
    [
        (0, ALIGN * 16, True),
        (ALIGN * 3, ALIGN * 8, True),  # from a block boundary inside the file
        (100, ALIGN * 16, False),  # from inside a block: read plainly
        (0, 333, False),  # chunks that are not whole blocks: read plainly
    ],
)
def test_every_byte_from_where_the_file_stands(data_file, direct_reads, start, size, direct):
    path, data = data_file
    with open(path, "rb") as f:
        f.seek(start)
        chunks = [chunk.to_pybytes() for chunk in read_dropping(f, size)]
    assert b"".join(chunks) == data[start:]
    assert all(len(c) == size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= size
    assert bool(direct_reads) == (direct and _direct_possible(path))


def test_a_short_direct_read_is_completed_plainly(data_file, direct_reads, monkeypatch):
    path, data = data_file
    if not _direct_possible(path):
        pytest.skip("this file system has no direct I/O")
    real, shortened = os.preadv, []

    def short_once(fd, buffers, offset):
        if not shortened:
            shortened.append(offset)
            return real(fd, [buffers[0][:ALIGN]], offset)  # a short read in mid-file
        return real(fd, buffers, offset)

    monkeypatch.setattr(spool.os, "preadv", short_once)
    with open(path, "rb") as f:
        back = b"".join(chunk.to_pybytes() for chunk in read_dropping(f, ALIGN * 16))
    assert back == data and shortened == [0] and direct_reads


def test_stopping_early_closes_the_direct_descriptor_and_the_helper(data_file, direct_reads):
    path, _ = data_file
    if not _direct_possible(path):
        pytest.skip("this file system has no direct I/O")
    before = set(os.listdir("/proc/self/fd"))
    with open(path, "rb") as f:
        reader = read_dropping(f, ALIGN * 4)
        first = next(reader)
        assert first.size == ALIGN * 4
        reader.close()
    assert set(os.listdir("/proc/self/fd")) <= before
    assert not [t for t in threading.enumerate() if t.name == "raw-read"]
