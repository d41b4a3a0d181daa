"""Object store port and adapters, chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import urlparse

from ..errors import ConfigError
from .base import Storage, StoredObject


def _file(url, settings):
    from .file import FileStorage

    return FileStorage.from_url(url, settings)


def _s3(url, settings):
    from .s3 import S3Storage

    return S3Storage.from_url(url, settings)


SCHEMES = {"file": _file, "s3": _s3}


def open_storage(url: str, settings=None) -> Storage:
    """Build the object store for ``url`` (``file:///path`` or ``s3://bucket/prefix``)."""
    scheme = urlparse(url).scheme
    try:
        factory = SCHEMES[scheme]
    except KeyError:
        raise ConfigError(f"unknown storage URL scheme {scheme!r}; known: {', '.join(sorted(SCHEMES))}") from None
    return factory(url, settings)


__all__ = ["Storage", "StoredObject", "open_storage"]
