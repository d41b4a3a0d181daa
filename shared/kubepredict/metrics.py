"""Every Prometheus metric in one place.

In-process counters (gateway invocations, online latency, upload bytes) live in the long-running
gateway. Job outcomes, durations, queue depth, rows predicted and the outbox backlog are read from
the catalogue at scrape time (``CatalogCollector``): jobs and Kubeless calls are short-lived
processes whose own counters would die with them, while the database outlives them all.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
JOB_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

INVOCATIONS = Counter("gateway_function_invocation_total", "Function invocations through the gateway.",
                      ["function_name", "code"], registry=REGISTRY)
FUNCTION_SECONDS = Histogram("gateway_functions_seconds", "Function call duration through the gateway.",
                             ["function_name", "code"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
ONLINE_PREDICT_SECONDS = Histogram("kubepredict_online_predict_seconds", "Online prediction latency in the function.",
                                   buckets=LATENCY_BUCKETS, registry=REGISTRY)
UPLOAD_BYTES = Counter("kubepredict_upload_bytes", "Bytes of CSV data uploaded.", registry=REGISTRY)


class CatalogCollector:
    """Reads job, prediction and outbox figures from the catalogue at each scrape."""

    def __init__(self, catalog):
        self.catalog = catalog

    def describe(self):
        return []

    def collect(self):
        from .catalog.stats import job_stats

        try:
            stats = job_stats(self.catalog, JOB_BUCKETS)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database blipped
            logger.exception("could not read catalogue metrics")
            return
        total = CounterMetricFamily("kubepredict_jobs", "Finished jobs by kind and outcome.", labels=["kind", "status"])
        for kind in ("train", "predict"):
            for status in ("succeeded", "failed", "cancelled"):
                total.add_metric([kind, status], stats["by_status"].get((kind, status), 0))
        yield total
        queue = GaugeMetricFamily("kubepredict_jobs_in_queue", "Jobs waiting to run.", labels=["kind"])
        for kind in ("train", "predict"):
            queue.add_metric([kind], stats["by_status"].get((kind, "queued"), 0))
        yield queue
        running = GaugeMetricFamily("kubepredict_jobs_running", "Jobs running now.", labels=["kind"])
        for kind in ("train", "predict"):
            running.add_metric([kind], stats["by_status"].get((kind, "running"), 0))
        yield running
        hist = HistogramMetricFamily("kubepredict_job_duration_seconds", "Duration of finished jobs.", labels=["kind"])
        for kind, (buckets, count_sum) in sorted(stats["durations"].items()):
            hist.add_metric([kind], buckets, count_sum)
        yield hist
        rows = CounterMetricFamily("kubepredict_rows_predicted", "Rows scored by succeeded batch prediction jobs.")
        rows.add_metric([], stats["rows_predicted"])
        yield rows
        pending = GaugeMetricFamily("kubepredict_events_pending", "Outbox events not yet published to Kafka.")
        pending.add_metric([], stats["events_pending"])
        yield pending


def register_catalog(catalog) -> None:
    """Attach the catalogue collector to the registry once (the gateway calls this)."""
    for c in list(getattr(REGISTRY, "_collector_to_names", {})):
        if isinstance(c, CatalogCollector):
            REGISTRY.unregister(c)
    REGISTRY.register(CatalogCollector(catalog))


def exposition() -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY)
