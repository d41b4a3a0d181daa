"""``file://`` object store: a local folder, atomic writes by temp file + rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..errors import BackendUnavailable, InvalidInput, NotFound, PayloadTooLarge
from .base import Storage, StoredObject

CHUNK = 1024 * 1024


class FileStorage(Storage):
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str, settings=None) -> "FileStorage":
        return cls(url2pathname(urlparse(url).path))

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise InvalidInput(f"invalid object key {key!r}")
        return p

    def put(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(f"body is larger than the limit of {max_bytes} bytes",
                                              details={"limit_bytes": max_bytes})
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def staging_file(self) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        os.close(fd)
        return tmp

    def put_file(self, key: str, path: str, *, sha256: str | None = None, hashed: bool = True) -> StoredObject:
        """Move a staged file into place (fsynced, atomic rename); hashed unless the caller knows its SHA-256
        or needs none (``hashed=False``)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            with open(path, "rb+") as f:
                if sha256 is None and hashed:
                    while chunk := f.read(CHUNK):
                        digest.update(chunk)
                size = os.fstat(f.fileno()).st_size
                os.fsync(f.fileno())
            os.replace(path, target)
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=sha256 or (digest.hexdigest() if hashed else ""))

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"object {key!r} not found") from exc
        except OSError as exc:
            raise BackendUnavailable(f"object store read failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.name.startswith(".tmp-"):
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise BackendUnavailable(f"object store folder {self.root} is not writable")
