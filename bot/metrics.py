"""Prometheus metrics: one registry per app, so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The core's metrics; feature areas register theirs in ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests served, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.unhandled_errors = Counter(
            "unhandled_errors_total",
            "Unexpected exceptions caught at a boundary (HTTP, job, event), by where.",
            ["where"],
            registry=self.registry,
        )
        self.job_runs = Counter(
            "job_runs_total",
            "Scheduled job runs, by job and outcome (ok, error, skipped).",
            ["job", "outcome"],
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        # The classic text format (0.0.4): every Prometheus version scrapes it.
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
