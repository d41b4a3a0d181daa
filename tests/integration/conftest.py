"""Adapters of each port, built against the real services (contract suites are parametrized over these)."""

from __future__ import annotations

import pytest

from kubepredict.catalog import open_catalog
from kubepredict.config import Settings
from kubepredict.storage.file import FileStorage
from kubepredict.storage.s3 import S3Storage


def s3_settings(bucket: dict) -> Settings:
    return Settings(
        storage_url=bucket["storage_url"],
        s3_endpoint_url=bucket["endpoint_url"],
        s3_region=bucket["region"],
        s3_access_key_id=bucket["access_key_id"],
        s3_secret_access_key=bucket["secret_access_key"],
        s3_addressing_style="path",
    )


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path):
    if request.param == "file":
        return FileStorage(tmp_path / "objects")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Storage.from_url(bucket["storage_url"], s3_settings(bucket))


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'catalog.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    c = open_catalog(url)
    yield c
    c.dispose()
