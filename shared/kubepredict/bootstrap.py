"""The composition root: builds real adapters for whatever the caller did not pass in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import arrow_memory
from .catalog import Catalog, open_catalog
from .config import Settings
from .storage import Storage, open_storage

if TYPE_CHECKING:
    from .services.model_cache import ModelCache


@dataclass
class App:
    """The wired application every function, loop and worker is handed (usually as ``svc``)."""

    settings: Settings
    catalog: Catalog
    storage: Storage
    models: ModelCache = field(default=None)  # type: ignore[assignment]  # None only until __post_init__
    #: Called after a job is queued: a dispatcher in this process (the embedded gateway's) starts it at
    #: once instead of at its next round.
    job_queued: Callable[[], None] = field(default=lambda: None)

    def __post_init__(self):
        if self.models is None:
            from .services.model_cache import ModelCache

            self.models = ModelCache()


def bootstrap(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    storage: Storage | None = None,
    create_schema: bool = True,
) -> App:
    """Wire settings → catalogue, object store; tests pass their own adapters instead."""
    settings = settings or Settings.from_env()
    catalog = catalog or open_catalog(settings.database_url, create=create_schema)
    storage = storage or open_storage(settings.storage_url, settings)
    return App(settings=settings, catalog=catalog, storage=storage)


_slot: App | None = None
_slot_lock = threading.Lock()


def default_app() -> App:
    """The process's App, built on first use from the environment. Only the function runtime adapters
    (``runtimes/kubeless.py``, ``runtimes/openfaas.py``), whose entry points get no App, use this."""
    global _slot
    if _slot is None:
        with _slot_lock:
            if _slot is None:
                arrow_memory.use_jemalloc()  # a function pod: the gateway's allocator
                _slot = bootstrap()
    return _slot


def set_default_app(app: App | None) -> None:
    """Replace (or with None, reset) the process's App slot — for tests and the gateway."""
    global _slot
    with _slot_lock:
        _slot = app
