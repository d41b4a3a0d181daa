"""Prometheus 2.42 + Pushgateway 1.5 (Debian packages) on 127.0.0.1.

Prometheus runs with ``--web.enable-lifecycle`` and a 1 s scrape interval; it
always scrapes the pushgateway (``honor_labels: true``). Tests add their own
targets with ``set_scrape_targets()`` / ``set_scrape_configs()`` (writes a new
config file, then ``POST /-/reload``) and read results with ``query()``, which
polls ``/api/v1/query`` until the result is non-empty (a first sample takes ~5 s
to appear: target updates are batched every 5 s).

    with PrometheusServer() as prom:
        prom.set_scrape_targets("myjob", ["127.0.0.1:8000"])
        prom.query('my_counter_total{job="myjob"}', timeout=30)
        prom.pushgateway_url            # for prometheus_client.push_to_gateway
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from . import LOOPBACK, SETUP_HINT, Service, ServiceUnavailable, free_port, port_open, wait_until

PROMETHEUS = "prometheus"
PUSHGATEWAY = "prometheus-pushgateway"
PROMTOOL = "promtool"


def _http(method: str, url: str, data: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class PrometheusServer(Service):
    name = "prometheus"
    start_timeout = 60.0
    port_attrs = ("port", "pushgateway_port")
    scrape_interval = "1s"

    def __init__(self, port: int | None = None, pushgateway_port: int | None = None) -> None:
        super().__init__()
        self.port = port
        self.pushgateway_port = pushgateway_port
        self.scrape_configs: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pushgateway_url(self) -> str:
        return f"http://{LOOPBACK}:{self.pushgateway_port}"

    @property
    def pushgateway_address(self) -> str:
        """host:port, what ``prometheus_client.push_to_gateway`` takes."""
        return f"{LOOPBACK}:{self.pushgateway_port}"

    def check_available(self) -> None:
        for exe, pkg in ((PROMETHEUS, "prometheus"), (PUSHGATEWAY, "prometheus-pushgateway")):
            if not shutil.which(exe):
                raise ServiceUnavailable(f"`{exe}` not found: {SETUP_HINT} or apt-get install {pkg}")

    def _log_files(self):
        return [p for p in (self.log_path, self.tmpdir and self.tmpdir / "pushgateway.log") if p]

    # -- config ---------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "pushgateway",
                    "honor_labels": True,
                    "static_configs": [{"targets": [self.pushgateway_address]}],
                },
                *self.scrape_configs,
            ],
        }

    def _write_config(self) -> None:
        assert self.tmpdir is not None
        # JSON is valid YAML: no PyYAML needed
        tmp = self.tmpdir / "prometheus.yml.new"
        tmp.write_text(json.dumps(self._config(), indent=2))
        tmp.replace(self.tmpdir / "prometheus.yml")

    def _start(self) -> None:
        assert self.tmpdir is not None
        self.port = self.port or free_port()
        self.pushgateway_port = self.pushgateway_port or free_port()
        while self.pushgateway_port == self.port:
            self.pushgateway_port = free_port()
        pg = self._spawn(
            [PUSHGATEWAY, f"--web.listen-address={LOOPBACK}:{self.pushgateway_port}", "--log.level=warn"],
            log_path=self.tmpdir / "pushgateway.log",
        )
        self._write_config()
        prom = self._spawn(
            [
                PROMETHEUS,
                f"--config.file={self.tmpdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.tmpdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
                "--query.lookback-delta=1m",
            ],
            cwd=self.tmpdir,
        )
        wait_until(lambda: port_open(self.pushgateway_port), 30, what="pushgateway port", alive=self._alive(pg))
        wait_until(
            lambda: _http("GET", self.url + "/-/ready")[0] == 200,
            self.start_timeout,
            what="Prometheus /-/ready",
            alive=self._alive(prom),
        )
        wait_until(
            lambda: _http("GET", self.pushgateway_url + "/-/ready")[0] == 200,
            30,
            what="pushgateway /-/ready",
            alive=self._alive(pg),
        )

    def _stop(self) -> None:
        if self.started and self.port:
            # graceful: lets the TSDB close; the process group gets SIGTERM anyway
            _http("POST", self.url + "/-/quit", timeout=2)

    # -- per-test: scrape configuration --------------------------------------
    def set_scrape_configs(self, scrape_configs: Iterable[dict[str, Any]]) -> None:
        """Replace the test scrape configs (the pushgateway job stays) and reload."""
        self.scrape_configs = [dict(c) for c in scrape_configs]
        self._write_config()
        self.reload()

    def set_scrape_targets(self, job: str, targets: Iterable[str], **extra: Any) -> None:
        """One static job scraping ``targets`` ("host:port"), replacing earlier test jobs."""
        self.set_scrape_configs([{"job_name": job, "static_configs": [{"targets": list(targets)}], **extra}])

    def reset(self) -> None:
        """Drop test scrape configs and pushed groups."""
        self.set_scrape_configs([])
        _http("PUT", self.pushgateway_url + "/api/v1/admin/wipe")

    def reload(self) -> None:
        status, body = _http("POST", self.url + "/-/reload", timeout=10)
        if status != 200:
            raise RuntimeError(f"Prometheus reload failed ({status}): {body.decode(errors='replace')}")

    # -- queries ---------------------------------------------------------------
    def query_once(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        status, body = _http("GET", f"{self.url}/api/v1/query?{qs}", timeout=5)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed ({status}): {doc.get('error', body[:200])}")
        result = doc["data"]["result"]
        return result if isinstance(result, list) else [result]

    def query(
        self,
        promql: str,
        timeout: float = 30.0,
        interval: float = 0.5,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Poll an instant query until ``until(result)`` holds (default: non-empty).

        Returns the result list (``[{"metric": {...}, "value": [ts, "str"]}, ...]``);
        raises TimeoutError with the last result when it never holds.
        """
        until = until or bool
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.query_once(promql)
                if until(last):
                    return last
            except (OSError, ValueError, RuntimeError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"query {promql!r}: condition not met after {timeout:.0f}s; last result: {last!r}")
            time.sleep(interval)

    def targets(self) -> list[dict[str, Any]]:
        _, body = _http("GET", self.url + "/api/v1/targets")
        return json.loads(body)["data"]["activeTargets"]


def query(prom: PrometheusServer, promql: str, timeout: float = 30.0, **kw) -> list[dict[str, Any]]:
    """Module-level form of ``PrometheusServer.query``."""
    return prom.query(promql, timeout=timeout, **kw)


def sample_value(result: list[dict[str, Any]]) -> float:
    """Value of the first sample of an instant-query result."""
    return float(result[0]["value"][1])


def promtool_path() -> str:
    path = shutil.which(PROMTOOL)
    if not path:
        raise ServiceUnavailable(f"`promtool` not found: {SETUP_HINT} or apt-get install prometheus")
    return path
