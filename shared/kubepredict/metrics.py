"""Every Prometheus metric in one place.

Where each figure comes from, and why:

- In-process counters (gateway invocations, online latency, upload bytes) live in the long-running
  embedded gateway (``REGISTRY``, served on its ``/metrics``).
- Job outcomes, durations, queue depth, rows predicted and the outbox backlog are read from the
  catalogue at scrape time (``CatalogCollector``): jobs are separate processes or pods whose own
  counters would die with them, while the database outlives them all and is already the single
  source of truth for job state — so the numbers cannot disagree with ``/function/result``.
- Under Kubeless every call runs in a fresh child process, so the Kubeless adapter counts each call
  durably (``record_call``: one upsert into the small ``invocations`` table) and
  ``InvocationCollector`` exposes them under the OpenFaaS gateway's names from a long-lived process
  (``kubepredict dispatcher --metrics-port`` or ``kubepredict metrics``; see ``catalog_registry``).

Labels are bounded: function name (4), status code, job kind (2), job status (5), stream outcome (3), model
name x feature (drift). Never ids.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

# Function calls: online predictions take milliseconds, uploads of large CSVs seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Jobs: small fits take a second, large ones up to the job deadline (an hour by default).
JOB_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
JOB_KINDS = ("train", "predict")
FINISHED = ("succeeded", "failed", "cancelled")

INVOCATIONS_HELP = "Function invocations through the gateway."
SECONDS_HELP = "Function call duration through the gateway."
INVOCATIONS = Counter(
    "gateway_function_invocation_total", INVOCATIONS_HELP, ["function_name", "code"], registry=REGISTRY
)
FUNCTION_SECONDS = Histogram(
    "gateway_functions_seconds", SECONDS_HELP, ["function_name", "code"], buckets=LATENCY_BUCKETS, registry=REGISTRY
)
ONLINE_PREDICT_SECONDS = Histogram(
    "kubepredict_online_predict_seconds",
    "Online prediction latency in the function.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
# Stream scoring (events/stream.py): records answered or dead-lettered, rows scored, micro-batch size and time.
STREAM_RECORDS = Counter(
    "kubepredict_stream_records_total", "Stream scoring requests by outcome.", ["outcome"], registry=REGISTRY
)
STREAM_ROWS = Counter("kubepredict_stream_rows_total", "Rows scored by stream scoring.", registry=REGISTRY)
STREAM_BATCH_RECORDS = Histogram(
    "kubepredict_stream_batch_records",
    "Requests per stream scoring micro-batch.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
    registry=REGISTRY,
)
STREAM_BATCH_SECONDS = Histogram(
    "kubepredict_stream_batch_seconds",
    "Time to score and commit one stream micro-batch (one Kafka transaction).",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPLOAD_BYTES = Counter("kubepredict_upload_bytes_total", "Bytes of CSV data uploaded.", registry=REGISTRY)
# The /async-function queue (runtimes/async_calls.py): what it holds now, and the calls it refused as full.
ASYNC_CALLS = Gauge("kubepredict_async_calls", "Async calls queued or running in this gateway.", registry=REGISTRY)
ASYNC_BYTES = Gauge("kubepredict_async_bytes", "Bytes of async call bodies spooled to disk.", registry=REGISTRY)
ASYNC_REFUSED = Counter(
    "kubepredict_async_refused_total", "Async calls refused because the queue was full (429).", registry=REGISTRY
)


class CatalogCollector:
    """Reads job, prediction and outbox figures from the catalogue at each scrape (SQL aggregates);
    with no catalogue (``catalog`` None) it yields nothing."""

    def __init__(self, catalog):
        self.catalog = catalog

    def describe(self):
        return []

    def collect(self):
        from .catalog.stats import job_stats

        if self.catalog is None:
            return
        up = GaugeMetricFamily("kubepredict_catalog_up", "1 when the last scrape could read the catalogue.")
        try:
            stats = job_stats(self.catalog, JOB_BUCKETS, JOB_KINDS)
        except Exception:  # a scrape must not fail because the database blipped
            logger.exception("could not read catalogue metrics")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = stats["by_status"]
        total = CounterMetricFamily("kubepredict_jobs", "Finished jobs by kind and outcome.", labels=["kind", "status"])
        for kind in JOB_KINDS:
            for status in FINISHED:
                total.add_metric([kind, status], by_status.get((kind, status), 0))
        yield total
        queue = GaugeMetricFamily("kubepredict_jobs_in_queue", "Jobs waiting to run.", labels=["kind"])
        running = GaugeMetricFamily("kubepredict_jobs_running", "Jobs running now.", labels=["kind"])
        oldest_q = GaugeMetricFamily(
            "kubepredict_oldest_queued_job_age_seconds", "Age of the oldest queued job (0 when none).", labels=["kind"]
        )
        oldest_r = GaugeMetricFamily(
            "kubepredict_oldest_running_job_age_seconds",
            "Time since the longest-running job started (0 when none).",
            labels=["kind"],
        )
        ages = stats["oldest_age_seconds"]
        for kind in JOB_KINDS:
            queue.add_metric([kind], by_status.get((kind, "queued"), 0))
            running.add_metric([kind], by_status.get((kind, "running"), 0))
            oldest_q.add_metric([kind], ages.get((kind, "queued"), 0.0))
            oldest_r.add_metric([kind], ages.get((kind, "running"), 0.0))
        yield from (queue, running, oldest_q, oldest_r)
        hist = HistogramMetricFamily(
            "kubepredict_job_duration_seconds",
            "Run time (start to finish) of succeeded and failed jobs.",
            labels=["kind"],
        )
        for kind, (buckets, seconds) in sorted(stats["durations"].items()):
            hist.add_metric([kind], buckets, seconds)
        yield hist
        rows = CounterMetricFamily("kubepredict_rows_predicted", "Rows scored by succeeded batch prediction jobs.")
        rows.add_metric([], stats["rows_predicted"])
        yield rows
        pending = GaugeMetricFamily("kubepredict_events_pending", "Outbox events not yet published to Kafka.")
        pending.add_metric([], stats["events_pending"])
        yield pending
        yield from self._drift()

    def _drift(self):
        """Per-feature PSI of each model name's last batch prediction (catalogue: jobs' ``summary.drift``)."""
        from .catalog.stats import drift_stats

        try:
            by_model = drift_stats(self.catalog)
        except Exception:
            logger.exception("could not read drift metrics")
            return
        psi = GaugeMetricFamily(
            "kubepredict_feature_drift_psi",
            "Population stability index of each feature in the last batch prediction of a model (by name).",
            labels=["model", "feature"],
        )
        for model, features in sorted(by_model.items()):
            for feature, value in sorted(features.items()):
                psi.add_metric([model, feature], value)
        yield psi


class InvocationCollector:
    """Function calls counted durably by short-lived processes (Kubeless), under the gateway's names."""

    def __init__(self, catalog):
        self.catalog = catalog

    def describe(self):
        return []

    def collect(self):
        from .catalog.stats import invocation_stats

        try:
            stats = invocation_stats(self.catalog, LATENCY_BUCKETS)
        except Exception:  # see CatalogCollector
            logger.exception("could not read invocation metrics")
            return
        total = CounterMetricFamily("gateway_function_invocation", INVOCATIONS_HELP, labels=["function_name", "code"])
        seconds = HistogramMetricFamily("gateway_functions_seconds", SECONDS_HELP, labels=["function_name", "code"])
        for (fn, code), (buckets, total_seconds, n) in sorted(stats.items()):
            total.add_metric([fn, code], n)
            seconds.add_metric([fn, code], buckets, total_seconds)
        yield total
        yield seconds


#: The gateway's catalogue figures: registered once, pointed at a catalogue by ``register_catalog``.
_GATEWAY_CATALOG = CatalogCollector(None)
REGISTRY.register(_GATEWAY_CATALOG)


def register_catalog(catalog) -> None:
    """Serve ``catalog``'s figures on the gateway's registry (the gateway calls this; the last one wins)."""
    _GATEWAY_CATALOG.catalog = catalog


def catalog_registry(catalog) -> CollectorRegistry:
    """A registry for a long-lived process next to functions that cannot keep counters (dispatcher):
    job figures plus the durably counted function calls."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(CatalogCollector(catalog))
    registry.register(InvocationCollector(catalog))
    return registry


def record_call(function_name: str, status: int, seconds: float, svc) -> None:
    """Count one call durably (Kubeless adapter). Never raises: a metrics write must not fail a call."""
    from .catalog.stats import record_invocation

    try:
        record_invocation(svc.catalog, function_name, str(status), seconds, LATENCY_BUCKETS)
    except Exception:
        logger.warning("could not record the %s call (%s) for metrics", function_name, status, exc_info=True)


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(registry or REGISTRY)


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "0.0.0.0"):
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread; returns ``(server, thread)``."""
    from prometheus_client import start_http_server

    result = start_http_server(port, addr=host, registry=registry)
    logger.info("metrics on http://%s:%s/metrics", host, port)
    return result
