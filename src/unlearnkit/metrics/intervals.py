"""Intervals over seeds that stay inside the metric's range, and when a difference is a "beat".

A Student-t interval over 2-3 seeds is mean +- t * sd / sqrt(n) with t = 12.7 (n = 2) or 4.3
(n = 3): it leaves [0, 1] for ToW ([0.242, 1.590] was published). The percentile bootstrap
over seeds resamples the seeds' values and takes the 2.5th and 97.5th percentiles of the
resampled means: every such mean lies between the smallest and the largest value, so the
interval can never leave the range the values live in. With few seeds it is narrow (it cannot
be wider than the values' own span), so an interval alone does not make a claim:

``paired_verdict`` calls a paired difference a "beat" (or "worse") only when the bootstrap
interval of the per-seed differences excludes 0 *and* there are at least
``MIN_SEEDS_FOR_CLAIM`` seeds. The percentile interval of n differences excludes 0 only when
(nearly) all of them share a sign, and all n sharing a sign happens with probability 2 / 2^n
when there is no difference (the sign test); that is below 0.05 first at n = 6. With fewer
seeds the verdict says so instead of claiming.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 10_000
MIN_SEEDS_FOR_CLAIM = 6
INTERVAL_METHOD = "bootstrap percentile over seeds (10,000 resamples), 95%"


def mean_ci95(values: Sequence[float], seed: int = 0) -> tuple[float, tuple[float, float] | None]:
    """Mean and the 95% percentile-bootstrap interval of the mean over seeds (no interval from
    a single seed). Deterministic for a given ``seed``; always within [min, max] of the values."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(RESAMPLES, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, (float(max(low, data.min())), float(min(high, data.max())))


def paired_verdict(differences: Sequence[float]) -> str:
    """``beats`` / ``worse`` / ``no difference shown``, or ``too few seeds`` below
    ``MIN_SEEDS_FOR_CLAIM`` (the rule in the module docstring)."""
    n = len(differences)
    if n < MIN_SEEDS_FOR_CLAIM:
        return f"too few seeds to claim (n = {n} < {MIN_SEEDS_FOR_CLAIM})"
    _, ci = mean_ci95(differences)
    assert ci is not None
    if ci[0] > 0:
        return "beats"
    if ci[1] < 0:
        return "worse"
    return "no difference shown"
