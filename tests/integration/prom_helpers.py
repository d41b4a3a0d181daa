"""Helpers shared by the Prometheus tests: a tallying HTTP client and polled PromQL equality."""

from __future__ import annotations

import collections
import time

import httpx

from tests.e2e.api import Api

SCRAPE = {"scrape_interval": "1s", "scrape_timeout": "1s"}
TIMEOUT = 90.0  # a first sample takes ~5 s; generous for a loaded 2-core machine


class TallyApi(Api):
    """``Api`` that counts every function call it makes by (function, status code), as the gateway should."""

    def __init__(self, base: str, timeout: float = 60):
        super().__init__(base, timeout)
        self.calls: collections.Counter = collections.Counter()
        self.http = httpx.Client(base_url=base, timeout=timeout, event_hooks={"response": [self._count]})

    def _count(self, response: httpx.Response) -> None:
        parts = response.request.url.path.split("/")
        if len(parts) > 2 and parts[1] == "function":
            self.calls[(parts[2], str(response.status_code))] += 1


def as_map(result: list[dict], *labels: str) -> dict:
    return {tuple(r["metric"].get(k, "") for k in labels): round(float(r["value"][1]), 6) for r in result}


def wait_equal(prom, promql: str, expected, labels: tuple[str, ...] = (), timeout: float = TIMEOUT):
    """Poll ``promql`` until its samples, keyed by ``labels``, equal ``expected`` (a dict, or a number)."""

    def holds(result):
        got = as_map(result, *labels) if labels else (round(float(result[0]["value"][1]), 6) if result else None)
        return got == expected

    started = time.monotonic()
    try:
        return prom.query(promql, timeout=timeout, until=holds)
    except TimeoutError as exc:
        raise AssertionError(f"after {time.monotonic() - started:.0f} s: {promql} != {expected!r}: {exc}") from None


def assert_flow_metrics(prom, job: str, calls: dict, rows_predicted: float) -> None:
    """Prometheus shows exactly these calls per (function, code), one succeeded train and predict job, the rows."""
    expected = {k: float(v) for k, v in calls.items()}
    sel = f'job="{job}"'
    wait_equal(prom, f"gateway_function_invocation_total{{{sel}}}", expected, ("function_name", "code"))
    wait_equal(prom, f"gateway_functions_seconds_count{{{sel}}}", expected, ("function_name", "code"))
    wait_equal(
        prom, f'kubepredict_jobs_total{{{sel},status="succeeded"}}', {("train",): 1.0, ("predict",): 1.0}, ("kind",)
    )
    wait_equal(prom, f'sum(kubepredict_jobs_total{{{sel},status!="succeeded"}})', 0.0)
    wait_equal(prom, f"kubepredict_rows_predicted_total{{{sel}}}", float(rows_predicted))
