"""A large request body read ahead on the event loop and read by a worker thread (runtimes/asgi.py)."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import time

import pytest

from kubepredict.runtimes.asgi import _BodyAhead
from kubepredict.storage.spool import DIRECT_BUFFER_BYTES, SpoolFile, read_dropping


def _messages(parts: list[bytes], *, disconnect: bool = False):
    """An ASGI ``receive`` over ``parts``; records the largest amount buffered ahead of the reader."""
    queue = list(parts)

    async def receive():
        await asyncio.sleep(0)
        if not queue:
            return {"type": "http.disconnect"}
        body = queue.pop(0)
        more = bool(queue) or disconnect
        return {"type": "http.request", "body": body, "more_body": more}

    return receive


def _read_in_thread(parts, sizes, *, limit: int, disconnect: bool = False):
    async def main():
        body = _BodyAhead(_messages(parts, disconnect=disconnect), limit=limit)
        peaks = []

        def reader():
            out = []
            for n in sizes:
                peaks.append(body._size)
                chunk = body.read(n)
                out.append(chunk)
                if not chunk:
                    break
            return out

        try:
            return await asyncio.get_running_loop().run_in_executor(None, reader), peaks
        finally:
            body.close()

    return asyncio.run(main())


def test_the_thread_reads_the_whole_body_in_order_in_the_sizes_it_asks():
    parts = [os.urandom(n) for n in (1, 70_000, 5, 300_000, 65_536, 12)]
    data = b"".join(parts)
    chunks, _ = _read_in_thread(parts, [3, 100_000, 1, 200_000] + [50_000] * 10, limit=128 * 1024)
    assert b"".join(chunks) == data
    # every read but the last ones is whole: a reader asking n bytes gets n until the body ends
    assert [len(c) for c in chunks[:4]] == [3, 100_000, 1, 200_000]
    assert chunks[-1] == b""


def test_readinto_and_read_mixed_take_the_body_in_order_and_read_still_gives_bytes():
    """``readinto`` copies the pieces straight into the caller's buffer and may leave a piece's rest as a
    view of it; a ``read`` after that still returns ``bytes`` and the right bytes."""
    parts = [os.urandom(n) for n in (1, 70_000, 5, 300_000, 65_536, 12)]
    data = b"".join(parts)

    async def main():
        body = _BodyAhead(_messages(parts), limit=128 * 1024)

        def reader():
            out, kinds = [], []
            for i, n in enumerate([3, 100_000, 7, 1, 200_000, 50_000, 50_000, 90_000, 10]):
                if i % 2:
                    buf = bytearray(n + 5)  # room past n: only what was read is written
                    got = body.readinto(memoryview(buf)[:n])
                    out.append(bytes(buf[:got]))
                    kinds.append(type(got))
                    assert buf[got:] == bytes(len(buf) - got)
                else:
                    chunk = body.read(n)
                    out.append(chunk)
                    kinds.append(type(chunk))
            return out, kinds

        try:
            return await asyncio.get_running_loop().run_in_executor(None, reader)
        finally:
            body.close()

    chunks, kinds = asyncio.run(main())
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks[:5]] == [3, 100_000, 7, 1, 200_000]
    assert kinds[::2] == [bytes] * 5 and kinds[1::2] == [int] * 4
    assert chunks[-1] == b""


def test_reading_ahead_stops_at_the_limit():
    """The loop never buffers much more than ``limit`` ahead of a slow reader (one message past it at most)."""
    parts = [b"x" * 10_000] * 200
    chunks, peaks = _read_in_thread(parts, [10_000] * 201, limit=50_000)
    assert sum(map(len, chunks)) == 2_000_000
    assert max(peaks) <= 50_000 + 10_000


def test_read_all_and_readline():
    async def main():
        body = _BodyAhead(_messages([b"a,b\n1,", b"2\n3,4\n"]), limit=1024)
        try:
            loop = asyncio.get_running_loop()
            first = await loop.run_in_executor(None, body.readline)
            rest = await loop.run_in_executor(None, body.read)
            return first, rest
        finally:
            body.close()

    assert asyncio.run(main()) == (b"a,b\n", b"1,2\n3,4\n")


def test_a_client_that_goes_away_is_an_error_not_a_short_body():
    with pytest.raises(OSError, match="closed the connection"):
        _read_in_thread([b"a,b\n", b"1,2\n"], [4, 4, 4, 4], limit=1024, disconnect=True)


def test_a_chunked_body_past_the_limit_stops_being_read_and_says_why():
    """Counted as it arrives: past ``max_bytes`` the pump stops receiving and the reader gets 413."""
    from kubepredict.errors import PayloadTooLarge
    from kubepredict.runtimes.edge import FRAMING_BYTES

    received = []

    async def main():
        source = _messages(parts)

        async def counting():
            m = await source()
            received.append(m)
            return m

        body = _BodyAhead(counting, limit=1 << 20, max_bytes=FRAMING_BYTES + 5000)

        def reader():
            got = b""
            with pytest.raises(PayloadTooLarge) as err:
                while True:
                    chunk = body.read(4096)
                    assert chunk, "a short body instead of an error"
                    got += chunk
            return got, err.value

        try:
            return await asyncio.get_running_loop().run_in_executor(None, reader), body.complete
        finally:
            body.close()

    parts = [b"x" * 1000] * (FRAMING_BYTES // 1000 + 50)
    (got, err), complete = asyncio.run(main())
    assert err.details == {"limit_bytes": 5000} and not complete
    assert len(received) < len(parts) and len(got) <= FRAMING_BYTES + 6000


def test_spool_file_round_trip_with_pages_dropped(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "raw"
    with SpoolFile(str(path), window=1024 * 1024) as spool:
        for i in range(0, len(data), 100_000):
            spool.write(data[i : i + 100_000])
        assert spool.tell() == len(data)
    with open(path, "rb") as f:
        back = b"".join(read_dropping(f, 256 * 1024))
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("drop", [True, False])
def test_spool_file_round_trip_through_its_writer_thread(tmp_path, drop):
    """A cold copy goes around the page cache (O_DIRECT where the file system can: aligned buffers, the
    padding of the last one cut off); a kept one is queued as is. Both give back exactly the bytes."""
    data = os.urandom(3 * DIRECT_BUFFER_BYTES + 4095)
    path = tmp_path / "copy"
    with SpoolFile(str(path), drop=drop) as spool:
        if drop and spool._writer._aligned:  # which path was taken
            assert fcntl.fcntl(spool._fd, fcntl.F_GETFL) & os.O_DIRECT
        view = memoryview(bytearray(data))
        for i in range(0, len(data), 1_000_003):  # a caller's reused buffer: copied before it returns
            spool.write(view[i : i + 1_000_003])
        assert spool.tell() == len(data)
    assert path.stat().st_size == len(data)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_spool_file_write_error_is_raised_to_the_caller(tmp_path, monkeypatch):
    """The writer thread's OSError is the caller's: at its next write or at close, never lost."""
    from kubepredict.storage import spool as spool_module

    def fail(fd, data):
        raise OSError(errno.EIO, "Input/output error")

    spool = SpoolFile(str(tmp_path / "raw"), drop=False)
    monkeypatch.setattr(spool_module.os, "write", fail)
    spool.write(b"x" * 10)
    with pytest.raises(OSError, match="Input/output"):
        for _ in range(100):
            spool.write(b"x" * 10)
            time.sleep(0.01)
    with pytest.raises(OSError, match="Input/output"):
        spool.close()
    assert spool.closed


def test_spool_file_left_by_an_error_is_closed(tmp_path):
    path = tmp_path / "raw"
    with pytest.raises(RuntimeError):
        with SpoolFile(str(path)) as spool:
            spool.write(b"partial")
            raise RuntimeError("boom")
    assert spool.closed and path.read_bytes() == b"partial"
