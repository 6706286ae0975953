"""Prometheus metrics in the text exposition format (counters, gauges, histograms).

Small and dependency-free: the service needs a handful of series, all updated under one lock.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = (*labels, *extra)
    if not items:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in items
    )
    return "{" + body + "}"


def _fmt(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{int(value)}"


class MetricSet:
    """Named metric families; ``render()`` gives the /metrics body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._hist: dict[str, dict[Labels, list[float]]] = defaultdict(dict)
        self._buckets: dict[str, tuple[float, ...]] = {}

    def describe(
        self, name: str, kind: str, text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS
    ) -> None:
        self._help[name] = (kind, text)
        if kind == "histogram":
            self._buckets[name] = buckets

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = float(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        buckets = self._buckets[name]
        with self._lock:
            row = self._hist[name].setdefault(key, [0.0] * (len(buckets) + 2))
            row[bisect.bisect_left(buckets, value)] += 1  # per-bucket (not cumulative) counts
            row[-1] += value  # sum

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in sorted(self._help.items()):
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "histogram":
                    buckets = self._buckets[name]
                    for labels, row in sorted(self._hist[name].items()):
                        running = 0.0
                        for bound, count in zip((*buckets, float("inf")), row[:-1], strict=True):
                            running += count
                            le = "+Inf" if bound == float("inf") else repr(bound)
                            lines.append(
                                f"{name}_bucket{_fmt_labels(labels, (('le', le),))} {_fmt(running)}"
                            )
                        lines.append(f"{name}_sum{_fmt_labels(labels)} {row[-1]!r}")
                        lines.append(f"{name}_count{_fmt_labels(labels)} {_fmt(running)}")
                else:
                    for labels, value in sorted(self._values[name].items()):
                        lines.append(f"{name}{_fmt_labels(labels)} {_fmt(value)}")
        return "\n".join(lines) + "\n"


def service_metrics() -> MetricSet:
    """The service's metric families, described (so they are listed before their first use)."""
    reg = MetricSet()
    reg.describe("unlearnkit_http_requests_total", "counter", "HTTP requests by route and status")
    reg.describe("unlearnkit_http_request_seconds", "histogram", "HTTP request latency by route")
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
    return reg
