"""loops.BackgroundLoop: the start/stop/join of every long-running loop, and the loops that use it."""

import logging
import threading

from kubepredict.config import Settings
from kubepredict.events.connector import KafkaConnector
from kubepredict.events.relay import OutboxRelay
from kubepredict.events.stream import StreamScorer
from kubepredict.loops import BackgroundLoop
from kubepredict.runner.dispatcher import Dispatcher


class Ticker(BackgroundLoop):
    thread_name = "ticker"

    def __init__(self):
        super().__init__()
        self.ticks = 0
        self.woken = threading.Event()

    def run(self):
        while not self.stopping:
            self.ticks += 1
            self._stop.wait(60)  # stop() cuts this pause short

    def wake(self):
        self.woken.set()


def test_start_runs_the_loop_in_a_named_daemon_thread_and_stop_ends_it():
    loop = Ticker()
    assert not loop.is_alive() and not loop.stopping
    assert loop.start() is loop
    assert loop.is_alive() and loop._thread.daemon and loop._thread.name == "ticker"
    loop.stop(timeout=5)
    assert not loop.is_alive() and loop.stopping and loop.woken.is_set() and loop.ticks >= 1


def test_stop_and_join_before_start_are_harmless():
    loop = Ticker()
    loop.join(0.1)
    loop.stop(0.1)
    assert not loop.is_alive()


def test_an_exception_in_run_is_logged_and_ends_the_thread(caplog):
    class Broken(BackgroundLoop):
        thread_name = "broken"

        def run(self):
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="kubepredict.loops"):
        loop = Broken().start()
        loop.join(5)
    assert not loop.is_alive()
    assert any("broken stopped" in r.getMessage() and r.exc_info for r in caplog.records)


def test_every_long_running_loop_is_a_background_loop():
    for cls in (Dispatcher, OutboxRelay, KafkaConnector, StreamScorer):
        assert issubclass(cls, BackgroundLoop)
        assert cls.thread_name != BackgroundLoop.thread_name
        assert "_thread" not in cls.__init__.__code__.co_names  # no copy of the thread plumbing


def test_the_relay_stops_through_the_base(tmp_path):
    from kubepredict.catalog import open_catalog

    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    started = threading.Event()

    class Quiet(OutboxRelay):
        def run(self):
            started.set()
            while not self.stopping:
                self._stop.wait(60)

    relay = Quiet(catalog, Settings(kafka_bootstrap_servers="x:1")).start()
    assert started.wait(5) and relay.is_alive() and relay._thread.name == "outbox-relay"
    relay.stop(timeout=5)
    assert not relay.is_alive()
    catalog.dispose()
