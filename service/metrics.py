"""Prometheus metrics with a registry per app (no process-global collectors).

Every app builds its own :class:`Metrics`, so two apps in one process (tests, or a restart
inside one interpreter) never collide on metric names. Request metrics are labelled by the
route's path template (``/identities/{identity_id}``), never the raw path, which keeps the
label set bounded whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gaitid.service.db.outage import DatabaseStats
from gaitid.service.limits import CLIENT_GONE

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SEARCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class Metrics:
    """The service's collectors, registered in a private :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gaitid_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gaitid_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "gaitid_inference_seconds",
            "ONNX Runtime time of the batch each request was part of.",
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "gaitid_inference_queue_seconds",
            "Time a request waited for the micro-batcher.",
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "gaitid_inference_batch_size",
            "Walks per ONNX Runtime run.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.decode = Histogram(
            "gaitid_decode_seconds",
            "Upload decoding and preprocessing time.",
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.decode_wait = Histogram(
            "gaitid_decode_wait_seconds",
            "Time an upload waited for a decode slot (GAITID_MAX_CONCURRENT_DECODES).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decodes_running = Gauge(
            "gaitid_decodes_running",
            "Worker threads decoding an upload now, including ones whose request is over "
            "and that stop at their next frame.",
            registry=r,
        )
        self.decodes_cancelled = Counter(
            "gaitid_decodes_cancelled",
            "Decodes stopped because their request ended first (timeout or client gone).",
            registry=r,
        )
        self.search = Histogram(
            "gaitid_search_seconds",
            "One identify's gallery search: the vector index and the SQL lookup of its hits.",
            buckets=_SEARCH_BUCKETS,
            registry=r,
        )
        self.enrollments = Counter(
            "gaitid_enrollments", "Enrol requests by result.", ["result"], registry=r
        )
        self.decisions = Counter(
            "gaitid_identify_decisions", "Identify decisions.", ["decision"], registry=r
        )
        self.index_size = Gauge(
            "gaitid_index_templates", "Templates in the in-memory search index.", registry=r
        )

    def bind_index_size(self, size: Callable[[], int]) -> None:
        """Read the index size at scrape time (always current, nothing to keep in sync)."""
        self.index_size.set_function(lambda: float(size()))

    def bind_database(self, stats: Callable[[], DatabaseStats]) -> None:
        """Report the database's availability (``service.db.outage``), read at scrape time."""
        self.registry.register(_DatabaseCollector(stats))

    def observe_embedding(self, inference_ms: float, queue_ms: float, batch_size: int) -> None:
        self.inference.observe(inference_ms / 1000.0)
        self.queue.observe(queue_ms / 1000.0)
        self.batch_size.observe(batch_size)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DatabaseCollector(Collector):
    """``gaitid_database_up``, ``gaitid_database_outages_total`` and
    ``gaitid_database_refused_requests_total{reason}`` from the database's circuit."""

    def __init__(self, stats: Callable[[], DatabaseStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield GaugeMetricFamily(
            "gaitid_database_up",
            "1 while the database is reachable, 0 during an outage.",
            value=1.0 if stats.up else 0.0,
        )
        yield CounterMetricFamily(
            "gaitid_database_outages",
            "Times the database became unreachable.",
            value=stats.outages,
        )
        refused = CounterMetricFamily(
            "gaitid_database_refused_requests",
            "Requests answered 503 database_unavailable or 507 storage_full, by reason.",
            labels=["reason"],
        )
        for reason, count in stats.refused.items():
            refused.add_metric([reason], count)
        yield refused


class MetricsMiddleware:
    """Counts requests and observes latency by route template (pure ASGI, streams untouched)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if scope.get(CLIENT_GONE):
                status = 499  # client closed the request before the answer (nginx's code)
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
