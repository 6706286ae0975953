"""The service's Prometheus metrics, kept with the standard client (``prometheus_client``).

Each service has its own ``CollectorRegistry`` (several services may run in one process, as in
the tests), so nothing is registered globally. ``MetricSet`` keeps the small interface the
service's parts use (``inc``, ``set``, ``observe`` by metric name and labels) over the client's
``Counter``, ``Gauge`` and ``Histogram``; ``render()`` is the text exposition for ``/metrics``
and ``serve_metrics`` the optional unauthenticated listener for a scraper (``--metrics-port``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


class MetricSet:
    """Named metric families in one registry; ``render()`` gives the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._families: dict[str, Any] = {}

    def describe(
        self,
        name: str,
        kind: str,
        text: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        """Declare a family (a counter's name ends in ``_total``, as exposed)."""
        extra: dict[str, Any] = {"buckets": buckets} if kind == "histogram" else {}
        self._families[name] = _KINDS[kind](
            name, text, labelnames=labels, registry=self.registry, **extra
        )

    def _series(self, name: str, labels: dict[str, str]) -> Any:
        family = self._families[name]
        return family.labels(**labels) if labels else family

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._series(name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._series(name, labels).set(float(value))

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._series(name, labels).observe(value)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


class MetricsListener:
    """An unauthenticated HTTP listener that serves only the metrics (for a scraper)."""

    def __init__(self, metrics: MetricSet, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, host, registry=metrics.registry)
        self.host, self.port = host, int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def serve_metrics(metrics: MetricSet, host: str, port: int) -> MetricsListener:
    """Start the listener on ``host:port`` (port 0: a free one, see ``.port``)."""
    return MetricsListener(metrics, host, port)


def service_metrics() -> MetricSet:
    """The service's metric families, declared (so they are listed before their first use)."""
    reg = MetricSet()
    reg.describe(
        "unlearnkit_http_requests_total",
        "counter",
        "HTTP requests by route and status (route: a route template or 'unmatched'; "
        "method: a standard method or 'other')",
        labels=("route", "method", "status"),
    )
    reg.describe(
        "unlearnkit_http_request_seconds",
        "histogram",
        "HTTP request latency by route",
        labels=("route", "method"),
    )
    reg.describe(
        "unlearnkit_deletions_accepted_total", "counter", "deletion requests durably accepted"
    )
    reg.describe(
        "unlearnkit_deletions_applied_total",
        "counter",
        "deletion requests applied to the served model",
    )
    reg.describe("unlearnkit_deletions_failed_total", "counter", "deletion requests that failed")
    reg.describe("unlearnkit_samples_deleted_total", "counter", "sample ids deleted")
    reg.describe("unlearnkit_retrains_total", "counter", "background retrains swapped in")
    reg.describe("unlearnkit_model_version", "gauge", "version of the served model")
    reg.describe("unlearnkit_live_shards", "gauge", "shards serving predictions (exact mode)")
    reg.describe("unlearnkit_snapshots_total", "counter", "model snapshots written to disk")
    reg.describe(
        "unlearnkit_rate_limited_total", "counter", "requests refused by the rate limit (429)"
    )
    reg.describe(
        "unlearnkit_slow_requests_total",
        "counter",
        "requests cut off because their body arrived too slowly (408)",
    )
    reg.describe(
        "unlearnkit_ledger_write_errors_total",
        "counter",
        "deletions refused because the ledger could not be written (503)",
    )
    return reg
