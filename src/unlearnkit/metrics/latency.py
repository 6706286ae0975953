"""Latency of competing calls timed side by side: p50 / p99 with n, in milliseconds.

Two implementations timed one after the other see different machines when the load drifts
(another process starts, the CPU clocks down). ``alternating_latency`` interleaves them
(a, b, a, b, ...) after a warm-up of each, so any drift lands on all of them alike, and
``latency_summary`` reports a percentile only with the number of samples it comes from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MIN_P99_SAMPLES = 100  # fewer: a "p99" is the maximum or close to it, so none is reported


def latency_summary(seconds: Sequence[float]) -> dict[str, Any]:
    """n, p50, mean and max in ms, and p99 only from at least ``MIN_P99_SAMPLES`` samples
    (else None: read n and max instead)."""
    if not seconds:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    ms = np.asarray(seconds, dtype=float) * 1000.0
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) >= MIN_P99_SAMPLES else None,
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


def alternating_latency(
    calls: dict[str, Callable[[], Any]],
    reps: int,
    warmup: int = 10,
    sync: Callable[[], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each call's latency over ``reps`` rounds; a round runs every call once, in the given
    order, each timed alone. ``warmup`` untimed rounds first (caches, lazily built state).
    ``sync``: waits for queued device work (e.g. ``torch.cuda.synchronize``) inside each
    timing, so an asynchronous device is timed to completion."""
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps = {reps}, warmup = {warmup}: need reps >= 1 and warmup >= 0")
    wait = sync or (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for rnd in range(warmup + reps):
        for name, call in calls.items():
            wait()
            start = time.perf_counter()
            call()
            wait()
            if rnd >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: latency_summary(t) for name, t in times.items()}
