"""``kubepredict serve``: the gateway, the dispatcher and (with Kafka configured) relay and connector."""

from __future__ import annotations

import logging

from . import arrow_memory
from .bootstrap import bootstrap, set_default_app
from .runner.dispatcher import Dispatcher, make_runner
from .runtimes import asgi
from .runtimes.gateway import Gateway
from .services import orphans

logger = logging.getLogger(__name__)


def serve(settings, *, dispatch: bool = True) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both and drains open requests), then stop the loops."""
    pool = arrow_memory.use_jemalloc()
    svc = bootstrap(settings)
    set_default_app(svc)
    gateway = Gateway(svc)
    if settings.gc_on_start:
        orphans.sweep_in_background(svc)  # what a killed upload or job left behind, past the grace period
    dispatcher = Dispatcher(svc.catalog, make_runner(settings), settings).start() if dispatch else None
    if dispatcher:
        svc.job_queued = dispatcher.wake
    background = []
    if settings.kafka_bootstrap_servers:
        from .events.embedded import start_kafka_loops

        background = start_kafka_loops(svc)
    logger.info(
        "Kubepredict gateway on http://%s:%s/ (web page: /ui/, data: %s, database: %s, Arrow memory: %s)",
        settings.host,
        settings.port,
        settings.data_dir,
        settings.database_url.split("@")[-1],
        pool,
    )
    try:
        asgi.run(
            asgi.AsgiGateway(gateway, threads=settings.threads),
            host=settings.host,
            port=settings.port,
            max_connections=settings.max_connections,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            keep_alive=settings.keep_alive_seconds,
        )
    finally:
        for loop in background:
            loop.stop()
        if dispatcher:
            dispatcher.stop()
        svc.catalog.dispose()
