"""U-LiRA's statistics and their intervals for one audited method, from its phi arrays.

Shared by a running audit (``run.py``, from the cached model outputs) and by re-scoring a
finished one (``rescore.py``, from the phi it saved in ``llr.npz``), so both compute the same
numbers the same way. phi arrays are (K pairs, targets), NaN where a pair did not see a target
(a random forget spec: each pair forgets half the pool).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from unlearnkit.audit.config import AuditConfig
from unlearnkit.metrics.audit_intervals import Fit, PairInterval, Statistic, pair_interval
from unlearnkit.metrics.audit_stats import roc_auc, tpr_at_fpr

FPR_LEVELS = {"1pct": 0.01, "0.1pct": 0.001}


def ulira_statistics() -> dict[str, Statistic]:
    """``auc`` and ``tpr_at_<level>_fpr``: each (positive scores, negative scores) -> value."""
    statistics: dict[str, Statistic] = {"auc": roc_auc}
    for label, level in FPR_LEVELS.items():

        def stat(p: np.ndarray, n: np.ndarray, level: float = level) -> float:
            return tpr_at_fpr(p, n, level)

        statistics[f"tpr_at_{label}_fpr"] = stat
    return statistics


def ulira_intervals(
    phi_in: np.ndarray, phi_out: np.ndarray, audit: AuditConfig, interval: str | None = None
) -> dict[str, PairInterval]:
    """Every statistic's interval by ``interval`` (default: the audit's own), with the audit's
    fit, resamples and seed: the pair, not the example, is the sample."""
    return pair_interval(
        interval or audit.interval,
        phi_in,
        phi_out,
        ulira_statistics(),
        fit=Fit(audit.min_sd, audit.variance),
        resamples=audit.n_boot,
        seed=audit.seed,
    )


def ulira_values(phi_in: np.ndarray, phi_out: np.ndarray, audit: AuditConfig) -> dict[str, float]:
    """The statistics themselves (leave-one-out fit on all pairs)."""
    return Fit(audit.min_sd, audit.variance).evaluate(phi_in, phi_out, ulira_statistics())


def as_list(interval: PairInterval) -> list[float] | None:
    """[low, high] for results.json; None where the method could not make one."""
    if math.isnan(interval.low) or math.isnan(interval.high):
        return None
    return [float(interval.low), float(interval.high)]


def interval_fields(intervals: Mapping[str, PairInterval]) -> dict[str, Any]:
    """``<statistic>_ci95`` per statistic; the permutation null's central range and p-value of
    the AUC (None for the other interval methods); and whether the AUC sets the method apart
    from retraining: its interval lies above 0.5 (with the permutation interval: the AUC is
    above the null's upper quantile)."""
    fields: dict[str, Any] = {f"{name}_ci95": as_list(iv) for name, iv in intervals.items()}
    auc = intervals["auc"]
    fields.update(
        {
            "auc_null95": None if auc.null is None else [float(v) for v in auc.null],
            "auc_p_value": auc.p_value,
            "distinguishable": None if math.isnan(auc.low) else bool(auc.low > 0.5),
        }
    )
    return fields


def phi_from_arrays(
    arrays: Mapping[str, np.ndarray], method: str, pairs: int, columns: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a method's (K pairs, targets) phi arrays from what an audit saved in llr.npz
    (``<method>/phi_unlearned``, ``phi_retrained``, ``pair``, ``example_id``); NaN where a pair
    did not see a target. ``columns``: the target ids, in order (default: every saved one).

    The audit saves only the cells it scored; the cells it left out (a target seen by under
    three pairs) change no score, so the audit's statistics and intervals come back exactly.
    """
    pair = np.asarray(arrays[f"{method}/pair"], int)
    example = np.asarray(arrays[f"{method}/example_id"])
    ids = np.unique(example) if columns is None else np.asarray(columns)
    cols = np.searchsorted(ids, example) if columns is None else _positions(ids, example)
    phi_in = np.full((pairs, ids.size), np.nan)
    phi_out = phi_in.copy()
    phi_in[pair, cols] = arrays[f"{method}/phi_unlearned"]
    phi_out[pair, cols] = arrays[f"{method}/phi_retrained"]
    return phi_in, phi_out


def _positions(ids: np.ndarray, example: np.ndarray) -> np.ndarray:
    column = {int(i): j for j, i in enumerate(ids)}
    return np.array([column[int(i)] for i in example], int)


__all__ = [
    "FPR_LEVELS",
    "as_list",
    "interval_fields",
    "phi_from_arrays",
    "ulira_intervals",
    "ulira_statistics",
    "ulira_values",
]
