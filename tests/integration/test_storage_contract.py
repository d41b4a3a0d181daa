"""One contract for the object store port, run against the local folder and a real S3 API server."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from kubepredict.errors import BackendUnavailable, NotFound, PayloadTooLarge
from kubepredict.storage.s3 import S3Storage


def test_put_get_roundtrip_with_sha256(storage):
    data = os.urandom(1000) + b"tail"
    obj = storage.put("datasets/ds_1/data.csv", io.BytesIO(data))
    assert obj.size == len(data) and obj.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.get("datasets/ds_1/data.csv") == data
    assert storage.exists("datasets/ds_1/data.csv") and not storage.exists("datasets/ds_1/other")


def test_large_object_streams_in_parts(storage):
    """20 MiB crosses the multipart threshold (8 MiB parts on S3); hash and bytes survive."""
    chunk = os.urandom(1024 * 1024)
    data = chunk * 20
    obj = storage.put("big/blob", io.BytesIO(data))
    assert obj.sha256 == hashlib.sha256(data).hexdigest() and obj.size == len(data)
    with storage.open("big/blob") as f:
        f.seek(len(data) - 10)
        assert f.read() == data[-10:]


@pytest.mark.parametrize("known", [False, True])
def test_put_file_moves_a_staged_file_into_place(storage, known):
    """Uploads stage their spooled bytes locally, then hand the file over (hashed unless already known)."""
    data = os.urandom(1024 * 1024) * 9 + b"end"  # above the 8 MiB multipart threshold
    path = storage.staging_file()
    with open(path, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    obj = storage.put_file("datasets/ds_2/data.csv", path, sha256=digest if known else None)
    assert obj.size == len(data) and obj.sha256 == digest
    assert not os.path.exists(path)  # consumed
    assert storage.get("datasets/ds_2/data.csv") == data
    assert list(storage.list("datasets/ds_2/")) == ["datasets/ds_2/data.csv"]  # no staging leftovers listed


def test_missing_key_is_not_found(storage):
    with pytest.raises(NotFound):
        storage.get("nope/never")
    storage.delete("nope/never")  # deleting a missing key is fine


def test_size_limit_keeps_nothing(storage):
    with pytest.raises(PayloadTooLarge):
        storage.put("too/big", io.BytesIO(b"x" * 5000), max_bytes=1000)
    assert not storage.exists("too/big")
    assert list(storage.list("too/")) == []


def test_overwrite_is_whole_and_list_delete(storage):
    storage.put_bytes("models/m1/model.skops", b"first")
    storage.put_bytes("models/m1/model.skops", b"second version")
    storage.put_bytes("models/m2/model.skops", b"other")
    assert storage.get("models/m1/model.skops") == b"second version"
    assert sorted(storage.list("models/")) == ["models/m1/model.skops", "models/m2/model.skops"]
    storage.delete("models/m1/model.skops")
    assert list(storage.list("models/")) == ["models/m2/model.skops"]
    storage.ping()


def test_s3_wrong_secret_is_refused(s3_bucket):
    """The S3 server checks signatures: wrong credentials are a clear BackendUnavailable, not silent success."""
    if not s3_bucket["server"].checks_signatures:
        pytest.skip("moto fallback does not check signatures")
    bad = S3Storage(
        s3_bucket["bucket"],
        "p",
        endpoint_url=s3_bucket["endpoint_url"],
        region=s3_bucket["region"],
        access_key_id=s3_bucket["access_key_id"],
        secret_access_key="wrong",
        addressing_style="path",
    )
    with pytest.raises(BackendUnavailable):
        bad.put_bytes("k", b"v")


def test_unreachable_s3_is_backend_unavailable():
    dead = S3Storage(
        "b", "p", endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b", addressing_style="path"
    )
    for call in (lambda: dead.put_bytes("k", b"v"), lambda: dead.get("k"), dead.ping):
        with pytest.raises(BackendUnavailable):
            call()


def test_list_modified_and_the_orphan_sweep(storage, tmp_path):
    """Issue 16: objects no catalogue row owns are found and removed past the grace period, on both stores."""
    import time

    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.services.orphans import find_orphans, sweep

    svc = bootstrap(Settings(data_dir=tmp_path / "svc"), storage=storage)
    try:
        storage.put_bytes("datasets/ds_orphan/data.csv", b"a\n1\n")
        storage.put_bytes("models/mdl_orphan/model.skops", b"m")
        storage.put_bytes("other/kept.txt", b"not ours to judge")
        listed = {o.key: o.modified for o in storage.list_modified("datasets/")}
        assert list(listed) == ["datasets/ds_orphan/data.csv"]
        assert abs(listed["datasets/ds_orphan/data.csv"] - time.time()) < 600
        assert find_orphans(svc) == []  # younger than the grace period: maybe an upload in progress
        later = time.time() + 2 * svc.settings.orphan_grace_seconds
        assert sorted(find_orphans(svc, now=later)) == ["datasets/ds_orphan/data.csv", "models/mdl_orphan/model.skops"]
        assert sweep(svc, dry_run=True, now=later).removed == 0 and storage.exists("models/mdl_orphan/model.skops")
        assert sweep(svc, now=later).removed == 2
        assert list(storage.list("datasets/")) == [] and list(storage.list("models/")) == []
        assert storage.exists("other/kept.txt")
    finally:
        svc.catalog.dispose()
