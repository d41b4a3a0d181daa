"""``file://`` object store: a local folder, atomic writes by temp file + rename."""

from __future__ import annotations

import builtins
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..errors import BackendUnavailable, InsufficientStorage, InvalidInput, NotFound, PayloadTooLarge
from .base import ListedObject, Storage, StoredObject, disk_full_is_507
from .spool import DirectReader

CHUNK = 1024 * 1024
MIB = 1024 * 1024
STAGING = ".tmp-"
WHERE = "the object store's disk"


class FileStorage(Storage):
    reads_staged_files = False  # moved into place by a rename

    def __init__(self, root: str | Path, *, min_free_bytes: int = 64 * MIB):
        """``min_free_bytes``: ``ping`` reports the store unhealthy with less free space than this."""
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.min_free_bytes = min_free_bytes

    @classmethod
    def from_url(cls, url: str, settings=None) -> FileStorage:
        kw = {} if settings is None else {"min_free_bytes": settings.min_free_bytes}
        return cls(url2pathname(urlparse(url).path), **kw)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise InvalidInput(f"invalid object key {key!r}")
        return p

    def put(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        path = self._path(key)
        with disk_full_is_507(WHERE):
            return self._put(key, path, stream, max_bytes)

    def _put(self, key: str, path: Path, stream: BinaryIO, max_bytes: int | None) -> StoredObject:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=STAGING)
        except BaseException:
            self._prune(path.parent)
            raise
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(
                            f"body is larger than the limit of {max_bytes} bytes", details={"limit_bytes": max_bytes}
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            self._prune(path.parent)
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def staging_file(self) -> str:
        with disk_full_is_507(WHERE):
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=STAGING)
            os.close(fd)
        return tmp

    def put_file(self, key: str, path: str, *, sha256: str | None = None, hashed: bool = True) -> StoredObject:
        """Move a staged file into place (fsynced, atomic rename); hashed unless the caller knows its SHA-256
        or needs none (``hashed=False``)."""
        target = self._path(key)
        digest, size = hashlib.sha256(), 0
        try:
            with disk_full_is_507(WHERE):
                target.parent.mkdir(parents=True, exist_ok=True)
                f = open(path, "rb+")  # noqa: SIM115 - opened under the disk-full check, closed by the `with` below
            with f:
                if sha256 is None and hashed:
                    while chunk := f.read(CHUNK):
                        digest.update(chunk)
                size = os.fstat(f.fileno()).st_size
                with disk_full_is_507(WHERE):
                    os.fsync(f.fileno())
            os.replace(path, target)
        except BaseException:
            Path(path).unlink(missing_ok=True)
            self._prune(target.parent)
            raise
        return StoredObject(key=key, size=size, sha256=sha256 or (digest.hexdigest() if hashed else ""))

    def open(self, key: str) -> BinaryIO:
        return self._opened(key, lambda path: open(path, "rb"))

    def open_ranged(self, key: str) -> BinaryIO:
        """Read around the page cache: a Parquet copy is written that way (``SpoolFile``), and a job reading
        it through the cache would pay for fresh pages at a seventh of the direct read's speed."""
        return self._opened(key, DirectReader)

    def _opened(self, key: str, opener) -> BinaryIO:
        """``opener(path)`` of the object's file, its errors said as the store's."""
        try:
            return opener(str(self._path(key)))
        except FileNotFoundError as exc:
            raise NotFound(f"object {key!r} not found") from exc
        except OSError as exc:
            raise BackendUnavailable(f"object store read failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents while they are empty (no empty dataset folders left behind); the
        top-level folders (``datasets/``, ``models/``) stay, so a concurrent writer never loses its parent."""
        while folder.parent != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone, or raced by a writer): stop here
                return
            folder = folder.parent

    def list(self, prefix: str = "") -> Iterator[str]:
        for listed in self.list_modified(prefix):
            yield listed.key

    def list_modified(self, prefix: str = "") -> Iterator[ListedObject]:
        for p in sorted(self.root.rglob("*")):
            if not p.name.startswith(STAGING):
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        st = p.stat()
                    except FileNotFoundError:  # deleted meanwhile
                        continue
                    if p.is_file():
                        yield ListedObject(key, st.st_mtime)

    def stale_staging(self, older_than: float) -> builtins.list[str]:  # `list` is a method here
        stale = []
        for p in self.root.rglob(STAGING + "*"):
            try:
                if p.is_file() and p.stat().st_mtime < older_than:
                    stale.append(p.relative_to(self.root).as_posix())
            except FileNotFoundError:
                continue
        return sorted(stale)

    def remove_staging(self, name: str) -> None:
        p = self._path(name)
        if not p.name.startswith(STAGING):
            raise InvalidInput(f"not a staging file of this store: {name}")
        p.unlink(missing_ok=True)
        self._prune(p.parent)

    def ping(self) -> None:
        """Unhealthy when the folder is not writable, or has less than ``min_free_bytes`` free."""
        if not os.access(self.root, os.W_OK):
            raise BackendUnavailable(f"object store folder {self.root} is not writable")
        try:
            free = shutil.disk_usage(self.root).free
        except OSError as exc:
            raise BackendUnavailable(f"object store folder {self.root} cannot be read: {exc}") from exc
        if free < self.min_free_bytes:
            raise InsufficientStorage(
                f"object store disk nearly full: {free / MIB:.1f} MiB free, below the minimum of "
                f"{self.min_free_bytes / MIB:.1f} MiB (KUBEPREDICT_MIN_FREE_BYTES)",
                details={"free_bytes": free, "min_free_bytes": self.min_free_bytes},
            )
