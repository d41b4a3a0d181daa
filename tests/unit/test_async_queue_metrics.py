"""The async queue exports what it holds (calls, spooled bytes) and counts the calls it refused as full."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from kubepredict import errors, metrics
from kubepredict.api.http import Request
from kubepredict.config import Settings
from kubepredict.runtimes.async_calls import AsyncCalls


def _value(name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


def test_gauges_follow_the_queue_and_refusals_are_counted(tmp_path):
    settings = dataclasses.replace(Settings(), data_dir=str(tmp_path), async_queue_max=1, async_workers=1)
    hold, started = threading.Event(), threading.Event()

    def run(name, request, call_id, callback):
        started.set()
        hold.wait(10)

    calls = AsyncCalls(settings, run)
    refused = _value("kubepredict_async_refused_total")
    body = b"x" * 1000
    calls.submit(
        "predict", Request.build("POST", "/", headers={"Content-Length": str(len(body))}, body=body), "c1", None
    )
    assert started.wait(5)
    assert _value("kubepredict_async_calls") == 1
    assert _value("kubepredict_async_bytes") == len(body)
    with pytest.raises(errors.AsyncQueueFull):
        calls.submit("predict", Request.build("POST", "/", body=b"y"), "c2", None)
    assert _value("kubepredict_async_refused_total") == refused + 1
    hold.set()
    calls._pool.shutdown(wait=True)
    assert _value("kubepredict_async_calls") == 0
    assert _value("kubepredict_async_bytes") == 0
    assert not list((tmp_path / "async").iterdir())
