"""``BackgroundLoop``: the one start/stop/join code of the long-running loops (dispatcher, outbox relay,
Kafka connector, stream scorer), each of which runs ``run()`` in a daemon thread until asked to stop."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class BackgroundLoop:
    """Subclasses implement ``run()``, which returns once ``stopping`` is set (waiting on ``self._stop``
    lets ``stop()`` cut a pause short), and may extend ``wake()`` for a loop that waits on its own event."""

    #: The thread's name, as ``ps -L``, py-spy and log records show it.
    thread_name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self):
        """Run ``run()`` in a new daemon thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run_logged, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception:  # a thread's exception would otherwise vanish
            logger.exception("%s stopped", self.thread_name)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """Cut the loop's current pause short (``stop`` calls this once the stop flag is set)."""

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the loop to finish its round and wait up to ``timeout`` seconds for its thread to end."""
        self._stop.set()
        self.wake()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
