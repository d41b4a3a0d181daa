"""The object store port: a handful of verbs over opaque keys like ``datasets/ds_x/data.csv``."""

from __future__ import annotations

import builtins
import errno
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import InsufficientStorage

#: OS errors that mean "the disk is full" (no space, or over a quota).
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def disk_full_is_507(where: str) -> Iterator[None]:
    """Turn a full disk (ENOSPC/EDQUOT) met inside the block into InsufficientStorage (HTTP 507)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise InsufficientStorage(
                f"{where} is full ({exc.strerror}); free some space and retry", details={"where": where}
            ) from exc
        raise


class RangedReader(io.RawIOBase):
    """A random-access binary reader over an object of known size, for a Parquet reader: ``read(n)`` gives
    the bytes in ``[pos, pos + n)`` as ``_read_at`` fetched them, which Arrow wraps without a copy."""

    def __init__(self, size: int):
        self._size, self._pos = size, 0

    def _read_at(self, pos: int, n: int):
        """``n`` bytes (1 or more, none past the end) from ``pos``: bytes or any buffer."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1):  # any buffer, not only bytes
        n = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if n <= 0:
            return b""
        data = self._read_at(self._pos, n)
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ListedObject:
    key: str
    modified: float  # seconds since the epoch


class Storage(ABC):
    """Object store. Writes are atomic: a reader sees the whole object or none.

    Raises:
        NotFound: ``get``/``open`` of a missing key.
        BackendUnavailable: the store cannot be reached or failed.
        InsufficientStorage: a write met a full disk (nothing is kept).
        PayloadTooLarge: ``put`` with ``max_bytes`` and a larger stream (nothing is kept).
    """

    #: ``put_file`` reads a staged file back to send it elsewhere (rather than moving it into place): a
    #: file staged for it is then best written through the page cache, where that read finds it.
    reads_staged_files = True

    @abstractmethod
    def put(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        """Store ``stream`` under ``key`` while hashing it (SHA-256)."""

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        import io

        return self.put(key, io.BytesIO(data))

    def staging_file(self) -> str:
        """A new local temp file path for ``put_file`` (the same filesystem as the store where it has one)."""
        import os
        import tempfile

        with disk_full_is_507("the local temp folder"):
            fd, path = tempfile.mkstemp(prefix="kubepredict-")
            os.close(fd)
        return path

    def put_file(self, key: str, path: str, *, sha256: str | None = None, hashed: bool = True) -> StoredObject:
        """Store a local file under ``key``; the file is consumed (removed or moved into place).
        ``sha256``: the file's digest when the caller already computed it; ``hashed=False``: the caller
        needs no digest (the result's ``sha256`` is then empty where the store would have to compute it)."""
        import os

        try:
            with open(path, "rb") as f:
                return self.put(key, f)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open the object for streaming reads (caller closes)."""

    def open_ranged(self, key: str) -> BinaryIO:
        """Open the object for random access (seek + read) fetching only the byte ranges read (caller closes).

        What a shard reads its row groups of a Parquet copy through. The default is ``open``, fine for
        stores whose ``open`` is already seekable without copying (a local file).
        """
        return self.open(key)

    def get(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete a key; deleting a missing key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]: ...

    def list_modified(self, prefix: str = "") -> Iterator[ListedObject]:
        """Keys under ``prefix`` with their last-modified times (what the orphan sweep reads); a store that
        cannot tell is never swept (an object of unknown age may be an upload in progress)."""
        raise NotImplementedError(f"{type(self).__name__} does not list modification times")

    def stale_staging(self, older_than: float) -> builtins.list[str]:  # `list` is a method here
        """Staging files left by an interrupted write (a killed process), last modified before
        ``older_than`` (epoch seconds), named as ``remove_staging`` takes them; none where the store stages
        nothing of its own (S3: an interrupted multipart upload is the bucket's lifecycle rule's)."""
        return []

    def remove_staging(self, name: str) -> None:
        raise NotImplementedError

    def ping(self) -> None:
        """Raise BackendUnavailable when the store does not answer (InsufficientStorage when it is full)."""
        return None
