"""``s3://bucket/prefix`` object store (AWS S3, MinIO, S3Proxy) with boto3.

Writes stream through a hashing, size-limiting reader into a managed upload (multipart above
8 MiB), so nothing is buffered whole and the SHA-256 is computed on the way in; an object appears
only when its upload completes. Throttling and 5xx are retried by botocore; anything that still
fails is ``BackendUnavailable`` (HTTP 503 at the edge).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import urlparse

from ..errors import BackendUnavailable, ConfigError, NotFound, PayloadTooLarge
from .base import ListedObject, RangedReader, Storage, StoredObject

PART_BYTES = 8 * 1024 * 1024
SPOOL_BYTES = 64 * 1024 * 1024


class _RangedReader(RangedReader):
    """Random-access reader over one S3 object: each read is one ``Range: bytes=a-b`` GET, returned as it
    came (a Parquet reader asks for whole column chunks or its footer)."""

    def __init__(self, store: S3Storage, key: str, size: int):
        super().__init__(size)
        self._store, self._key = store, key
        self.bytes_fetched = 0  # what was actually downloaded (tests assert a shard reads only its part)

    def _read_at(self, pos: int, n: int) -> bytes:
        store = self._store
        try:
            resp = store.client.get_object(
                Bucket=store.bucket, Key=store._key(self._key), Range=f"bytes={pos}-{pos + n - 1}"
            )
            data = resp["Body"].read()
        except Exception as exc:
            raise store._fail(exc, self._key) from exc
        self.bytes_fetched += len(data)
        return data


class _HashingReader:
    """File-like wrapper: hashes and counts what boto3 reads, refusing more than ``max_bytes``."""

    def __init__(self, stream: BinaryIO, max_bytes: int | None):
        self._s, self._max = stream, max_bytes
        self.digest, self.size = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._s.read(n if n is not None and n >= 0 else -1)
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            raise PayloadTooLarge(
                f"body is larger than the limit of {self._max} bytes", details={"limit_bytes": self._max}
            )
        self.digest.update(chunk)
        return chunk


class S3Storage(Storage):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client=None,
        endpoint_url=None,
        region=None,
        access_key_id=None,
        secret_access_key=None,
        addressing_style: str = "auto",
    ):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=3,
                read_timeout=60,
                s3={"addressing_style": addressing_style},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region or "us-east-1",
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        self.client = client
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=4, use_threads=True
        )

    @classmethod
    def from_url(cls, url: str, settings=None) -> S3Storage:
        u = urlparse(url)
        if not u.netloc:
            raise ConfigError(f"storage URL {url!r} names no bucket; use s3://bucket/prefix")
        kw = {}
        if settings is not None:
            kw = dict(
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
                addressing_style=settings.s3_addressing_style,
            )
        return cls(u.netloc, u.path, **kw)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, key: str):
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"object {key!r} not found")
            if code in ("NoSuchBucket",):
                return BackendUnavailable(f"bucket {self.bucket!r} does not exist")
        return BackendUnavailable(f"object store unavailable: {exc}")

    def put(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        reader = _HashingReader(stream, max_bytes)
        try:
            self.client.upload_fileobj(reader, self.bucket, self._key(key), Config=self.transfer)
        except PayloadTooLarge:
            raise
        except Exception as exc:  # botocore/boto3 errors of every kind
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, PayloadTooLarge):
                cause = cause.__cause__ or cause.__context__
            if isinstance(cause, PayloadTooLarge):
                raise cause from exc
            raise self._fail(exc, key) from exc
        return StoredObject(key=key, size=reader.size, sha256=reader.digest.hexdigest())

    def put_file(self, key: str, path: str, *, sha256: str | None = None, hashed: bool = True) -> StoredObject:
        """Upload a staged local file in parts read lazily from disk (a stream would be buffered part by
        part in memory), then remove it."""
        import os

        try:
            if sha256 is None and hashed:
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(PART_BYTES):
                        digest.update(chunk)
                sha256 = digest.hexdigest()
            size = os.path.getsize(path)
            try:
                self.client.upload_file(path, self.bucket, self._key(key), Config=self.transfer)
            except Exception as exc:  # botocore/boto3 errors of every kind
                raise self._fail(exc, key) from exc
        finally:
            if os.path.exists(path):
                os.unlink(path)
        return StoredObject(key=key, size=size, sha256=sha256 or "")

    def open(self, key: str) -> BinaryIO:
        """A seekable local copy (memory up to 64 MiB, then a temp file): Parquet readers need to seek."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned: the caller closes it
        try:
            self.client.download_fileobj(self.bucket, self._key(key), spool, Config=self.transfer)
        except Exception as exc:
            spool.close()
            raise self._fail(exc, key) from exc
        spool.seek(0)
        return spool  # type: ignore[return-value]  # a binary file, which typeshed types apart from BinaryIO

    def open_ranged(self, key: str) -> BinaryIO:
        """A seekable reader whose reads are ranged GETs: a Parquet reader fetches its footer and the
        row groups it needs, not the whole object."""
        try:
            size = self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except Exception as exc:
            raise self._fail(exc, key) from exc
        return _RangedReader(self, key, int(size))  # type: ignore[return-value]  # a binary file, typed apart

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            err = self._fail(exc, key)
            if isinstance(err, NotFound):
                return False
            raise err from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            err = self._fail(exc, key)
            if not isinstance(err, NotFound):
                raise err from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        for listed in self.list_modified(prefix):
            yield listed.key

    def list_modified(self, prefix: str = "") -> Iterator[ListedObject]:
        base = self._key("")
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                for obj in page.get("Contents", []):
                    yield ListedObject(obj["Key"][len(base) :], obj["LastModified"].timestamp())
        except Exception as exc:
            raise self._fail(exc, prefix) from exc

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise BackendUnavailable(f"object store unavailable: {exc}") from exc
