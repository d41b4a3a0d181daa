"""Large local files streamed once, front to back, without churning the page cache.

An upload of several gigabytes spooled with plain writes leaves all of it dirty in the page cache
until the final fsync, which then writes it in one go while the client waits; every page it fills is
a page the kernel must find first, and on a VM that returns free memory to its host (as ours does
within seconds) a page found anew costs ~10x one reused. ``SpoolFile`` writes back and drops what it
wrote every ``window`` bytes, so the same few warm pages carry the whole file and the final ``fsync``
has little left to do; ``read_dropping`` reads such a file back the same way (1.8 GB/s from disk here,
against 0.45 GB/s for a plain read into new pages).

Dropping is for cold copies: the raw upload, which just the CSV download reads again. The Parquet copy
that training and prediction read is only written back as it goes (``drop=False``) and stays cached.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Iterator

from .base import disk_full_is_507

WINDOW_BYTES = 64 * 1024 * 1024
WHERE = "the disk holding uploads being received"
_FADVISE = hasattr(os, "posix_fadvise")  # not on macOS: there the pages simply stay cached


class SpoolFile:
    """Append-only writer over a path; ``close(sync=True)`` makes the whole file durable."""

    def __init__(self, path: str, *, drop: bool = True, window: int = WINDOW_BYTES):
        """``drop``: drop written pages from the cache (a cold copy); else keep them, only written back."""
        with disk_full_is_507(WHERE):
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._drop_pages = drop and _FADVISE
        self._window, self._written, self._dropped = window, 0, 0

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass  # unbuffered: every write is already in the kernel

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        with disk_full_is_507(WHERE):
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._written += n
            if self._written - self._dropped >= self._window:
                self._drop()
        return size

    def _drop(self) -> None:
        os.fdatasync(self._fd)
        if self._drop_pages:
            os.posix_fadvise(self._fd, self._dropped, self._written - self._dropped, os.POSIX_FADV_DONTNEED)
        self._dropped = self._written

    def close(self, *, sync: bool = True) -> None:
        if self._fd < 0:
            return
        try:
            if sync:
                with disk_full_is_507(WHERE):
                    self._drop()
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "SpoolFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close(sync=exc[0] is None)


def read_dropping(f: BinaryIO, size: int) -> Iterator[bytes]:
    """``f`` in chunks of ``size`` bytes; a local file's pages are dropped from the cache once read."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0 and _FADVISE:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    done = 0
    while chunk := f.read(size):
        yield chunk
        done += len(chunk)
        if fd >= 0 and _FADVISE:
            os.posix_fadvise(fd, 0, done, os.POSIX_FADV_DONTNEED)
