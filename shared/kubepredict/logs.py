"""Logging set-up for entrypoints only (serve, worker, dispatcher, relay, connector, the runtime adapters)."""

from __future__ import annotations

import logging
import os
import sys


def configure(level: str | None = None) -> None:
    level = (level or os.environ.get("KUBEPREDICT_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout, level=level, force=True, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
    )
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
