"""The C allocator (glibc's malloc) of our long-running processes; on any other libc nothing happens.

One home for the two things we ask of it: a server that keeps the memory it will reuse at once
(``tune_for_server``), and a process that hands freed memory back (``release_memory``).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from functools import cache

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free memory at the top of a heap beyond this is handed back to the system (glibc's dynamic default
#: grows to at most 64 MiB; it starts at 256 KiB).
TRIM_BYTES = 32 * 1024 * 1024
#: Blocks below this come from the heaps, reused, rather than each from its own fresh mapping (glibc's
#: dynamic default starts at 128 KiB and grows to at most 32 MiB).
MMAP_BYTES = 4 * 1024 * 1024


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc has it; musl and others do not
        libc.malloc_trim  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


def tune_for_server(environ=os.environ) -> bool:
    """Keep up to ``TRIM_BYTES`` of freed heap and serve blocks below ``MMAP_BYTES`` from the heaps.

    An upload's pieces (256 KiB from the connection, ~1 MiB Parquet pages) are freed and allocated again
    hundreds of times a second; with glibc's defaults the heap's top is handed back and faulted in again
    all along (a fault profile of a 394 MB upload: a third of its ~31,000 page faults). Measured on the
    bench's upload, first upload of a fresh gateway, medians of 4 in each of two A/B runs: 20,500 page
    faults instead of 31,000-33,000, 2.46-2.48 s of CPU instead of 2.54-2.55, 262-264 MB/s instead of
    254-256; the idle gateway afterwards holds 15-27 MiB more.
    glibc's own ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` variables, when set, win.
    Returns whether the allocator was tuned."""
    libc = _libc()
    if libc is None or "MALLOC_TRIM_THRESHOLD_" in environ or "MALLOC_MMAP_THRESHOLD_" in environ:
        return False
    done = bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES)) and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_BYTES))
    logger.debug("malloc: trim threshold %d, mmap threshold %d: %s", TRIM_BYTES, MMAP_BYTES, done)
    return done


def release_memory() -> None:
    """Collect garbage and hand the freed memory back to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
