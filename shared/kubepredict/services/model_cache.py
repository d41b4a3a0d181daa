"""A small thread-safe LRU of loaded models, keyed by model id + artifact digest."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class ModelCache:
    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, sha256: str, load: Callable[[], object]) -> object:
        key = (model_id, sha256)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        obj = load()  # outside the lock: loading may take a while; a duplicate load is harmless
        with self._lock:
            self._items[key] = obj
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return obj
