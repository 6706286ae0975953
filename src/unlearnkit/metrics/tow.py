"""Tug-of-war (ToW) against the retrain reference, and 95% confidence intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def tow(acc: dict[str, float], reference: dict[str, float]) -> float:
    """(1 - |d forget|/100)(1 - |d retain|/100)(1 - |d test|/100); accuracies in percent."""
    value = 1.0
    for key in ("forget", "retain", "test"):
        value *= 1 - abs(acc[key] - reference[key]) / 100
    return value


def tow_mia(
    acc: dict[str, float], mia: float, reference: dict[str, float], reference_mia: float
) -> float:
    """ToW with the forget-accuracy term replaced by the MIA-efficacy difference (percent)."""
    return (
        (1 - abs(mia - reference_mia) / 100)
        * (1 - abs(acc["retain"] - reference["retain"]) / 100)
        * (1 - abs(acc["test"] - reference["test"]) / 100)
    )


def mean_ci95(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """Mean and Student-t 95% interval; no interval from a single seed."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)
