"""A full disk, without a real one (the e2e tests use a small tmpfs): every layer says InsufficientStorage,
and the edge answers 507."""

from __future__ import annotations

import errno
import io
from types import SimpleNamespace

import pytest

from kubepredict.catalog.database import _unavailable
from kubepredict.errors import BackendUnavailable, InsufficientStorage
from kubepredict.runtimes.responses import error_response
from kubepredict.storage import spool
from kubepredict.storage.file import FileStorage


def _enospc(*args, **kw):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_spooling_onto_a_full_disk_is_insufficient_storage(tmp_path, monkeypatch):
    monkeypatch.setattr(spool.os, "write", _enospc)
    with pytest.raises(InsufficientStorage) as err:
        with spool.SpoolFile(str(tmp_path / "raw")) as f:
            f.write(b"x" * 10)
    assert "full" in err.value.message


def test_a_put_onto_a_full_disk_keeps_nothing(tmp_path, monkeypatch):
    store = FileStorage(tmp_path / "objects")

    class Full(io.RawIOBase):
        def read(self, n=-1):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(InsufficientStorage):
        store.put("models/mdl_x/model.skops", Full())
    assert sorted(p.name for p in (tmp_path / "objects").rglob("*")) == ["models"]  # no file, no mdl_x folder


def test_ping_reports_too_little_free_space(tmp_path):
    FileStorage(tmp_path, min_free_bytes=1).ping()
    with pytest.raises(InsufficientStorage) as err:
        FileStorage(tmp_path, min_free_bytes=2**62).ping()
    assert "free" in err.value.message and err.value.details["min_free_bytes"] == 2**62


@pytest.mark.parametrize(
    "orig, expected",
    [
        (SimpleNamespace(sqlite_errorcode=13), InsufficientStorage),  # SQLITE_FULL
        (SimpleNamespace(sqlstate="53100"), InsufficientStorage),  # PostgreSQL disk_full
        (SimpleNamespace(sqlite_errorcode=5), BackendUnavailable),  # SQLITE_BUSY
    ],
)
def test_database_disk_full_is_insufficient_storage(orig, expected):
    assert type(_unavailable(SimpleNamespace(orig=orig))) is expected


def test_insufficient_storage_is_507_json():
    r = error_response(InsufficientStorage("the object store's disk is full"))
    assert r.status == 507


def test_a_multipart_upload_whose_spool_meets_a_full_temp_folder_is_507(tmp_path, monkeypatch):
    import werkzeug.formparser
    from werkzeug.test import Client

    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.runtimes.gateway import Gateway

    monkeypatch.setattr(werkzeug.formparser, "parse_form_data", _enospc)
    svc = bootstrap(Settings(data_dir=tmp_path))
    r = Client(Gateway(svc)).post(
        "/function/upload", data={"file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv")}, content_type="multipart/form-data"
    )
    assert r.status_code == 507 and r.get_json()["error"]["code"] == "insufficient_storage"
    assert svc.catalog.list_datasets(limit=10, offset=0)[1] == 0
    svc.catalog.dispose()
