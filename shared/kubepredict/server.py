"""``kubepredict serve``: the gateway, the dispatcher and (with Kafka configured) relay and connector."""

from __future__ import annotations

import logging
import signal
import threading

from .bootstrap import bootstrap, set_default_services
from .runner.dispatcher import Dispatcher, make_runner
from .runtimes.gateway import Gateway

logger = logging.getLogger(__name__)


def serve(settings, *, dispatch: bool = True) -> None:
    from waitress import create_server

    services = bootstrap(settings)
    set_default_services(services)
    gateway = Gateway(services)
    dispatcher = Dispatcher(services.catalog, make_runner(settings), settings).start() if dispatch else None
    background = []
    if settings.kafka_bootstrap_servers:
        from .events.embedded import start_kafka_loops

        background = start_kafka_loops(services)
    server = create_server(gateway, host=settings.host, port=settings.port, threads=settings.threads,
                           # Never let waitress answer 413 in plain text: the gateway checks sizes itself and
                           # answers the API's JSON error (waitress still spools the body to disk first).
                           max_request_body_size=1 << 40,
                           channel_timeout=300, ident="kubepredict")
    stopping = threading.Event()

    def _stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            logger.info("stopping (signal %s)", signum)
            # Closing only the listener leaves keep-alive channels in waitress's loop, which then
            # never returns; close every channel so server.run() ends.
            from waitress import wasyncore

            server.close()
            wasyncore.close_all(server._map)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("Kubepredict gateway on http://%s:%s/ (web page: /ui/, data: %s, database: %s)",
                settings.host, server.effective_port, settings.data_dir, settings.database_url.split("@")[-1])
    try:
        server.run()
    except (OSError, ValueError):
        if not stopping.is_set():
            raise
    finally:
        for loop in background:
            loop.stop()
        if dispatcher:
            dispatcher.stop()
        services.catalog.dispose()
