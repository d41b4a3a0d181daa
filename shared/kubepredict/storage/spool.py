"""Large local files streamed once, front to back, without churning the page cache.

An upload of several gigabytes spooled with plain writes leaves all of it dirty in the page cache
until the final fsync, which then writes it in one go while the client waits; every page it fills is
a page the kernel must find first, and on a VM that returns free memory to its host (as ours does
within seconds) a page found anew costs ~10x one reused. ``SpoolFile`` writes back and drops what it
wrote every ``window`` bytes, so the same few warm pages carry the whole file and the final ``fsync``
has little left to do; ``read_dropping`` reads such a file back around the cache too (2.7 GB/s from
disk here with ``O_DIRECT``, 1.8 GB/s read and dropped, against 0.45–0.9 GB/s for a plain read into new
pages).

Dropping is for copies nobody reads at once: the raw upload (read again by a CSV download), and the Parquet
copy on a local store (read by the jobs, through ``DirectReader``). A Parquet copy that is sent on to an
object store right away is only written back as it goes (``drop=False``) and stays cached for that read.

Where the file system takes ``O_DIRECT`` (ext4, xfs, tmpfs since Linux 6.6), a cold copy skips the page
cache altogether: bytes are gathered in a few page-aligned buffers, reused for the whole file, and written
straight to the device by a writer thread. Even with dropping, every write copied into a cache page the
kernel had to find (``copy_folio_from_iter_atomic`` was 23 % of an upload's profile); a direct write copies
into a warm buffer and leaves the rest to the device (1.6 GB/s here).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import queue
import stat
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from .base import RangedReader, disk_full_is_507

if TYPE_CHECKING:
    import pyarrow as pa

WINDOW_BYTES = 64 * 1024 * 1024
WHERE = "the disk holding uploads being received"
_FADVISE = hasattr(os, "posix_fadvise")  # not on macOS: there the pages simply stay cached
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux; elsewhere cold copies are dropped instead
ALIGN = 4096  # what O_DIRECT needs of a write's address, length and offset on any block size up to 4 KiB
DIRECT_BUFFER_BYTES = 4 * 1024 * 1024
DIRECT_BUFFERS = 3  # one being filled, up to two being written
QUEUED = 16  # plain writes waiting for the writer thread (Parquet writes its pages ~1 MiB at a time)


class SpoolFile:
    """Append-only writer over a path; ``close(sync=True)`` makes the whole file durable.

    The writes themselves happen on a writer thread (``spool-write``), so the caller goes on producing the
    next bytes while the kernel copies or the device takes the last ones; at most ``QUEUED`` writes wait.
    An error there (a full disk) is raised by the caller's next ``write`` or by ``close``.
    """

    def __init__(self, path: str, *, drop: bool = True, window: int = WINDOW_BYTES, direct: bool = True):
        """``drop``: a cold copy: written around the cache (``direct``, where the file system can) or dropped
        from it; else the pages are kept, only written back as they go."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = -1
        with disk_full_is_507(WHERE):
            if drop and direct and _O_DIRECT:
                try:
                    fd = os.open(path, flags | _O_DIRECT, 0o600)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: this file system has no direct I/O
                        raise
            aligned = fd >= 0
            if not aligned:
                fd = os.open(path, flags, 0o600)
        self._fd, self._written = fd, 0
        self._writer = _Writer(fd, aligned=aligned, drop=drop and _FADVISE and not aligned, window=window)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass  # the writer thread hands every write to the kernel in order; close() waits for it

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        with disk_full_is_507(WHERE):
            self._writer.put(data)
        self._written += size
        return size

    def close(self, *, sync: bool = True) -> None:
        """Wait for the writer (what was written so far is kept either way); ``sync``: make it durable."""
        if self._fd < 0:
            return
        try:
            with disk_full_is_507(WHERE):
                self._writer.finish(self._written, sync=sync)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close(sync=exc[0] is None)


class _Writer:
    """The writer thread of one ``SpoolFile``.

    ``aligned`` (an O_DIRECT descriptor): the caller's bytes are gathered into a few page-aligned buffers,
    reused for the whole file, and whole buffers are written; the last one is padded to ``ALIGN`` and the
    padding cut off at the end. Otherwise each write's bytes are queued as they are, and every ``window``
    bytes are written back (``fdatasync``) and, with ``drop``, dropped from the cache.
    """

    def __init__(self, fd: int, *, aligned: bool, drop: bool, window: int):
        self._fd, self._aligned, self._drop, self._window = fd, aligned, drop, window
        self._queue: queue.Queue = queue.Queue(maxsize=DIRECT_BUFFERS - 1 if aligned else QUEUED)
        self._error: OSError | None = None
        self._written = self._synced = 0
        if aligned:  # the buffers the caller fills and the writer hands back
            self._free: queue.Queue[mmap.mmap] = queue.Queue()
            for _ in range(DIRECT_BUFFERS):  # anonymous maps are page-aligned
                self._free.put(mmap.mmap(-1, DIRECT_BUFFER_BYTES))
            self._buffer, self._filled = self._free.get(), 0
        self._thread = threading.Thread(target=self._run, name="spool-write", daemon=True)
        self._thread.start()

    def put(self, data) -> None:
        self._raise()
        if not self._aligned:
            self._queue.put(data if isinstance(data, bytes) else bytes(data))  # the caller may reuse its buffer
            return
        view = memoryview(data).cast("B")
        while view:
            n = min(len(view), DIRECT_BUFFER_BYTES - self._filled)
            self._buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == DIRECT_BUFFER_BYTES:
                self._queue.put((self._buffer, DIRECT_BUFFER_BYTES))
                self._buffer, self._filled = self._free.get(), 0

    def finish(self, size: int, *, sync: bool) -> None:
        if self._aligned and self._filled:
            padded = -(-self._filled // ALIGN) * ALIGN
            self._buffer[self._filled : padded] = bytes(padded - self._filled)
            self._queue.put((self._buffer, padded))
        self._queue.put(None)
        self._thread.join()
        self._raise()
        if self._aligned:
            os.ftruncate(self._fd, size)
            if sync:
                os.fsync(self._fd)  # the data is on the device already: this is the file's size
        elif sync:
            self._write_back()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            buffer, length = item if self._aligned else (item, len(item))
            try:
                if self._error is None:
                    view = memoryview(buffer)[:length]
                    while view:
                        view = view[os.write(self._fd, view) :]
                    self._written += length
                    if not self._aligned and self._written - self._synced >= self._window:
                        self._write_back()
            except OSError as exc:
                self._error = exc
            finally:
                if self._aligned:
                    self._free.put(buffer)

    def _write_back(self) -> None:
        os.fdatasync(self._fd)
        if self._drop:
            os.posix_fadvise(self._fd, self._synced, self._written - self._synced, os.POSIX_FADV_DONTNEED)
        self._synced = self._written


def read_dropping(f: BinaryIO, size: int) -> Iterator[pa.Buffer]:
    """``f`` from where it stands, in chunks of up to ``size`` bytes, leaving none of a local file's pages in
    the page cache.

    Each chunk is read into a buffer from Arrow's memory pool, which reuses the memory of the chunks let go
    before it: a new ``bytes`` per chunk was new pages for the kernel to find and zero (page faults and
    ``clear_page`` ~7 % of a 1M-row CSV download's CPU; 1.20 M against 1.12 M rows/s side by side).
    A local file is read around the cache (``O_DIRECT``, where the file system takes it and ``size`` is
    whole blocks), two chunks ahead of the caller by a helper thread: no cache pages to fill and drop, and
    the device works while the caller uses the chunk before. Side by side, a 1M-row CSV download: in an
    hour when the disk was slow, 1.30 M against 1.21 M rows/s (the first download after the upload
    1.21–1.26 M against 0.98–1.21 M); in a faster one, the same (1.28–1.29 M either way, 1 % less CPU).
    Otherwise the file is read plainly and each chunk's pages dropped once read."""
    import pyarrow as pa

    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    direct = _open_direct(f, fd, size) if fd >= 0 else None
    if direct is not None:
        from ..ahead import ahead

        yield from ahead(_direct_chunks(*direct, fd, size), depth=2, name="raw-read")
        return
    if fd >= 0 and _FADVISE:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    done = 0
    while True:
        buffer = pa.allocate_buffer(size)
        n = f.readinto(memoryview(buffer))  # type: ignore[attr-defined]  # files and spools have it
        if not n:
            return
        yield buffer.slice(0, n)
        done += n
        if fd >= 0 and _FADVISE:
            os.posix_fadvise(fd, 0, done, os.POSIX_FADV_DONTNEED)


def _open_direct(f: BinaryIO, fd: int, size: int) -> tuple[int, int] | None:
    """A second descriptor of ``f``'s file (``fd``) for direct reads of ``size`` bytes at a time, and where
    ``f`` stands; None where there is none: not Linux, not a regular file, a file system without direct
    I/O, a position inside a block or a size that is not whole blocks."""
    if not _O_DIRECT or size % ALIGN:
        return None
    try:
        position = f.tell()
        if position % ALIGN or not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | _O_DIRECT | getattr(os, "O_CLOEXEC", 0)), position
    except OSError:
        return None


def _direct_chunks(direct: int, position: int, plain: int, size: int) -> Iterator[pa.Buffer]:
    """Chunks of ``size`` bytes (the last one shorter) read through ``direct`` into block-aligned buffers
    from Arrow's pool; closes ``direct``. A read that ends short of the chunk before the end of the file
    (not seen on a local file) is completed through ``plain``, which reads from anywhere."""
    import pyarrow as pa

    try:
        while True:
            buffer = pa.allocate_buffer(size + ALIGN)
            skip = -buffer.address % ALIGN
            view = memoryview(buffer)[skip : skip + size]
            got = os.preadv(direct, [view], position)
            while 0 < got < size:  # short: the end of the file, or else read the rest plainly
                more = os.preadv(plain, [view[got:]], position + got)
                if not more:
                    break
                got += more
            if got:
                yield buffer.slice(skip, got)
            if got < size:
                return
            position += size
    finally:
        os.close(direct)


class DirectReader(RangedReader):
    """A local file read around the page cache (``O_DIRECT``), for random access by a Parquet reader.

    The Parquet copy of an upload is written straight to the device (see ``SpoolFile``); read through the
    cache, each job would pay for the same fresh pages the upload avoided (0.45 GB/s here, against
    3.1 GB/s read directly). Each read takes the aligned blocks around ``[pos, pos + n)`` into one new
    buffer and gives a view of its ``n`` bytes (no further copy). Where the file system has no direct I/O
    the file is read plainly (``pread``), with the same results.
    """

    def __init__(self, path: str):
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        fd = -1
        if _O_DIRECT:
            try:
                fd = os.open(path, flags | _O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
        self.direct = fd >= 0
        self._fd = fd if self.direct else os.open(path, flags)
        super().__init__(os.fstat(self._fd).st_size)

    def _read_at(self, pos: int, n: int) -> memoryview:
        start = pos - pos % ALIGN
        length = -(-(pos + n - start) // ALIGN) * ALIGN
        buffer = bytearray(length + ALIGN)  # a block-aligned stretch of it receives the read
        skip = -_address(buffer) % ALIGN if self.direct else 0
        view = memoryview(buffer)[skip : skip + length]
        got = 0
        while got < length and start + got < self._size:  # a direct read ends short at the end of the file
            done = os.preadv(self._fd, [view[got:]], start + got)
            if done == 0:
                break
            got += done
        first = pos - start
        return view[first : first + max(0, min(n, got - first))]

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _address(buffer: bytearray) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
