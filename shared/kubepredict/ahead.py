"""Iterate on a helper thread, a few items ahead of the consumer: I/O and Arrow/numpy work release the GIL,
so reading the next item overlaps with using the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")
_END = object()


def ahead(items: Iterable[T], *, depth: int = 1, name: str = "read-ahead") -> Generator[T, None, None]:
    """``items``, produced by a helper thread at most ``depth`` items ahead of the caller.

    An error raised while producing is raised here, in the caller's thread; leaving the loop early (or
    closing this generator) stops the helper before it produces more.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    helper = threading.Thread(target=produce, name=name, daemon=True)
    helper.start()
    try:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while helper.is_alive():  # unblock a helper waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                helper.join(0.05)
