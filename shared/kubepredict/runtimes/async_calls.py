"""The ``/async-function`` queue: bodies spooled to disk, bounded in calls and bytes, files removed when done.

A call holds one slot and its body's bytes from submission until it ends (queued or running); when either
bound would be passed the submission is refused with ``AsyncQueueFull`` (429 with ``Retry-After``). Bodies
live in ``<data_dir>/async/`` while queued, never in memory; leftovers of a killed gateway are removed at
start (queued calls do not survive a restart).
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import errors, metrics
from ..api.http import Request
from .callbacks import CallbackPolicy

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024


def _read(stream) -> bytes:
    """A chunk of the request body; a client that goes away mid-body is bad input, not a server error."""
    try:
        return stream.read(CHUNK)
    except OSError as exc:
        raise errors.InvalidInput(f"the request body could not be read: {exc}", code="incomplete_body") from exc


class AsyncCalls:
    """Admit, spool and run async calls: ``run(name, request, call_id, callback)`` on a worker thread."""

    def __init__(self, settings, run: Callable[[str, Request, str, str | None], None]):
        self.run = run
        self.max_calls = settings.async_queue_max
        self.max_bytes = settings.async_queue_max_bytes
        self.max_body = settings.max_upload_bytes
        self.callbacks = CallbackPolicy(settings.callback_hosts, settings.callback_timeout_seconds)
        self.dir = Path(settings.data_dir) / "async"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.calls = 0
        self.bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=settings.async_workers, thread_name_prefix="async-call")

    def _full(self, why: str) -> errors.AsyncQueueFull:
        metrics.ASYNC_REFUSED.inc()
        return errors.AsyncQueueFull(
            f"the async queue is full ({why}); retry later",
            details={"max_calls": self.max_calls, "max_bytes": self.max_bytes},
        )

    def _too_large(self) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"request body is larger than {self.max_body} bytes", details={"limit_bytes": self.max_body}
        )

    def _take(self, calls: int, nbytes: int) -> None:
        with self._lock:
            if self.calls + calls > self.max_calls:
                raise self._full(f"{self.calls} calls queued or running")
            if self.bytes + nbytes > self.max_bytes:
                raise self._full(f"{self.bytes} bytes of queued bodies")
            self.calls += calls
            self.bytes += nbytes
            self._export()

    def _give(self, calls: int, nbytes: int) -> None:
        with self._lock:
            self.calls -= calls
            self.bytes -= nbytes
            self._export()

    def _export(self) -> None:
        metrics.ASYNC_CALLS.set(self.calls)
        metrics.ASYNC_BYTES.set(self.bytes)

    def submit(self, name: str, request: Request, call_id: str, callback: str | None) -> None:
        """Check the callback, take a slot, spool the body to disk and queue the call (raises 400/413/429)."""
        if callback:
            self.callbacks.check(callback)
        try:
            declared = max(0, int(request.headers.get("content-length") or 0))
        except ValueError:
            declared = 0
        if declared > self.max_body:
            raise self._too_large()
        self._take(1, declared)  # a declared length is refused up front, before any byte is read
        path = self.dir / f"{uuid.uuid4().hex}.body"
        size, taken, body = 0, declared, None
        try:
            with open(path, "wb") as out:
                while chunk := _read(request.stream):
                    size += len(chunk)
                    if size > self.max_body:
                        raise self._too_large()
                    if size > taken:  # chunked, or more than declared
                        self._take(0, size - taken)
                        taken = size
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise errors.BackendUnavailable(f"could not spool the async call's body: {exc}") from exc
            body = request.stream = open(path, "rb")  # noqa: SIM115 - closed by _release when the call ends
            self._pool.submit(self._run, name, request, call_id, callback, (body, path, taken))
        except BaseException:
            self._release(body, path, taken)
            raise

    def _run(self, name, request, call_id, callback, spooled) -> None:
        try:
            self.run(name, request, call_id, callback)
        except Exception:  # a background call logs, never kills the worker thread
            logger.exception("async call %s to %s failed", call_id, name)
        finally:
            self._release(*spooled)

    def _release(self, body, path: Path, size: int) -> None:
        try:
            if body is not None:
                body.close()
        finally:
            path.unlink(missing_ok=True)
            self._give(1, size)

    def send_callback(self, url: str, content: bytes, headers: dict, call_id: str) -> None:
        """POST the result to an allowed callback; failures are logged (the call itself has ended)."""
        import httpx

        try:
            status = self.callbacks.post(url, content, headers)
            if status >= 300:
                logger.warning(
                    "callback for call %s to %s answered %s (redirects are not followed)", call_id, url, status
                )
        except (errors.CallbackRefused, httpx.HTTPError) as exc:
            logger.warning("callback for call %s to %s failed: %s", call_id, url, exc)
