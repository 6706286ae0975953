"""Intervals for U-LiRA statistics that treat the shadow pair, not the example, as the sample.

Every score of one shadow model moves with that model (a model slightly more or less confident
on the whole forget class), and the Gaussians that turn phi into a log-likelihood ratio are
themselves fitted on the other pairs. So the K pairs are the sample, and the whole pipeline
(fit, score, statistic) has to be redone on each resample. Three ways, named in
``PAIR_INTERVALS`` (docs/audit.md, "The simulation study", says which one the audit uses and
why):

* ``pair_bootstrap``: the percentile interval of the statistic over resampled pairs, scores
  kept from the fit on all pairs (the audit's interval before issue 27; too narrow with few
  pairs, the more so when a pair's examples move together).
* ``pair_jackknife``: delete one pair, refit, recompute; the jackknife standard error with a
  Student-t quantile at K - 1 degrees of freedom (few clusters).
* ``permutation``: under exact unlearning the "unlearned" and the "reference" model of a pair
  are two draws from one distribution, so exchanging their roles within any set of pairs leaves
  the audit's distribution unchanged. The statistic over such exchanges (refitting each time) is
  its null distribution at these settings, bias of the leave-one-out fit included. The interval
  is the observed value minus the null's offsets from its centre (0.5 for the AUC, by
  symmetry; the null's median for a statistic without a known chance value, such as TPR at a
  low FPR), so it covers the centre exactly when the observed value lies inside the null's
  central range (a test with the level asked for).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from unlearnkit.metrics.audit_stats import VarianceMode, bootstrap_ci, loo_llr
from unlearnkit.registry import Registry

Array = np.ndarray
Statistic = Callable[[Array, Array], float]  # (positive scores, negative scores) -> value


@dataclass(frozen=True)
class PairInterval:
    """An interval; for the permutation method also the null's central range and the one-sided
    p-value P(null >= observed) (None for the other methods)."""

    low: float
    high: float
    null: tuple[float, float] | None = None
    p_value: float | None = None

    def covers(self, value: float) -> bool:
        return bool(not math.isnan(self.low) and self.low <= value <= self.high)


NAN = PairInterval(math.nan, math.nan)


@dataclass(frozen=True)
class Fit:
    """How phi becomes scores: the U-LiRA constants of the audit."""

    min_sd: float = 1e-3
    variance: VarianceMode = "per_example"

    def scores(self, phi_in: Array, phi_out: Array) -> tuple[Array, Array, Array]:
        """Positive and negative scores and the pair each came from (NaN cells left out)."""
        llr_in, llr_out = loo_llr(phi_in, phi_out, min_sd=self.min_sd, variance=self.variance)
        pairs, cols = np.nonzero(~np.isnan(llr_in) & ~np.isnan(llr_out))
        return llr_in[pairs, cols], llr_out[pairs, cols], pairs

    def evaluate(
        self, phi_in: Array, phi_out: Array, statistics: Mapping[str, Statistic]
    ) -> dict[str, float]:
        return self.evaluate_batch(phi_in[None], phi_out[None], statistics)[0]

    def evaluate_batch(
        self, phi_in: Array, phi_out: Array, statistics: Mapping[str, Statistic]
    ) -> list[dict[str, float]]:
        """``evaluate`` of B audits stacked as (B, K, n) arrays, the fits done at once."""
        llr_in, llr_out = loo_llr(phi_in, phi_out, min_sd=self.min_sd, variance=self.variance)
        valid = ~np.isnan(llr_in) & ~np.isnan(llr_out)
        out = []
        for b in range(len(llr_in)):
            pos, neg = llr_in[b][valid[b]], llr_out[b][valid[b]]
            if pos.size == 0:
                out.append({name: math.nan for name in statistics})
            else:
                out.append({name: f(pos, neg) for name, f in statistics.items()})
        return out


# statistics whose value under exact unlearning is known (by name); any other permutation
# interval is centred on its null's median (TPR at 1% FPR is not 0.5 by chance: it is ~0)
NULL_CENTRES = {"auc": 0.5}
SWAP_CELLS = 2_000_000  # phi cells scored in one array (~10 such arrays: ~160 MB at most)
PAIR_INTERVALS: Registry[dict[str, PairInterval]] = Registry("U-LiRA interval")


@PAIR_INTERVALS.register("pair_bootstrap")
def pair_bootstrap(
    phi_in: Array,
    phi_out: Array,
    statistics: Mapping[str, Statistic],
    *,
    fit: Fit | None = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, PairInterval]:
    """Percentile interval over resampled pairs of the scores from one fit on all pairs."""
    pos, neg, pairs = (fit or Fit()).scores(phi_in, phi_out)
    out = {}
    for name, f in statistics.items():
        low, high = bootstrap_ci(
            f, pos, neg, n_boot=resamples, level=level, seed=seed, groups=(pairs, pairs)
        )
        out[name] = PairInterval(low, high)
    return out


@PAIR_INTERVALS.register("pair_jackknife")
def pair_jackknife(
    phi_in: Array,
    phi_out: Array,
    statistics: Mapping[str, Statistic],
    *,
    fit: Fit | None = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, PairInterval]:
    """value +- t(K - 1) x the delete-one-pair jackknife standard error (each deletion refits
    the Gaussians on the pairs left); clipped to [0, 1]. Needs K >= 4 (a fit on K - 1 pairs
    leaves each target two others). ``resamples`` and ``seed`` are unused (deterministic)."""
    k, fit = phi_in.shape[0], fit or Fit()
    if k < 4:
        return dict.fromkeys(statistics, NAN)
    full = fit.evaluate(phi_in, phi_out, statistics)
    keep = [np.arange(k) != i for i in range(k)]
    leave_one = [fit.evaluate(phi_in[m], phi_out[m], statistics) for m in keep]
    t = stats.t.ppf(0.5 + level / 2, k - 1)
    out = {}
    for name in statistics:
        values = np.array([d[name] for d in leave_one])
        if math.isnan(full[name]) or np.isnan(values).any():
            out[name] = NAN
            continue
        se = math.sqrt((k - 1) / k * ((values - values.mean()) ** 2).sum())
        out[name] = PairInterval(
            float(max(0.0, full[name] - t * se)), float(min(1.0, full[name] + t * se))
        )
    return out


def role_swaps(k: int, resamples: int, seed: int) -> Array:
    """(S, K) booleans: which pairs exchange roles. Swapping every pair is the mirror image of
    swapping none (same statistic), so with 2^(K-1) <= resamples every distinct exchange with
    pair 0 fixed is listed once (the identity first); otherwise the identity and random draws."""
    if 2 ** (k - 1) <= resamples:
        rest = np.array(list(itertools.product((False, True), repeat=k - 1)), bool)
        return np.column_stack([np.zeros(len(rest), bool), rest])
    draws = np.random.default_rng(seed).random((resamples - 1, k)) < 0.5
    return np.vstack([np.zeros((1, k), bool), draws])


@PAIR_INTERVALS.register("permutation")
def permutation(
    phi_in: Array,
    phi_out: Array,
    statistics: Mapping[str, Statistic],
    *,
    fit: Fit | None = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, PairInterval]:
    """The null distribution from exchanging the roles within pairs (refit each time); the
    interval [v - (q_high - c), v + (c - q_low)] with q the null's central quantiles and c its
    centre (``NULL_CENTRES``, else the null's median)."""
    k, fit = phi_in.shape[0], fit or Fit()
    swaps = role_swaps(k, resamples, seed)
    null = {name: np.empty(len(swaps)) for name in statistics}
    step = max(1, min(64, SWAP_CELLS // phi_in.size))  # exchanges scored at once
    for start in range(0, len(swaps), step):
        batch = swaps[start : start + step, :, None]
        a = np.where(batch, phi_out, phi_in)
        b = np.where(batch, phi_in, phi_out)
        for s, values in enumerate(fit.evaluate_batch(a, b, statistics), start):
            for name, v in values.items():
                null[name][s] = v
    # the observed value is inside iff at most a share (1 - level) / 2 of the exchanges lie
    # strictly beyond it on either side: an exact test at the level asked for
    beyond = math.floor(len(swaps) * (1 - level) / 2)
    out = {}
    for name, values in null.items():
        observed = float(values[0])  # the identity: no pair exchanged
        if np.isnan(values).any():
            out[name] = NAN
            continue
        ordered = np.sort(values)
        q_low, q_high = float(ordered[beyond]), float(ordered[len(values) - 1 - beyond])
        centre = NULL_CENTRES.get(name, float(np.median(values)))
        out[name] = PairInterval(
            max(0.0, observed - (q_high - centre)),
            min(1.0, observed + (centre - q_low)),
            (q_low, q_high),
            float((values >= observed).mean()),
        )
    return out


def pair_interval(
    method: str,
    phi_in: Array,
    phi_out: Array,
    statistics: Mapping[str, Statistic],
    **options: object,
) -> dict[str, PairInterval]:
    """Intervals of each named statistic of U-LiRA scores by the method registered as
    ``method`` (``PAIR_INTERVALS``); phi arrays are (K pairs, targets) with NaN where unseen."""
    phi_in, phi_out = np.asarray(phi_in, float), np.asarray(phi_out, float)
    return PAIR_INTERVALS.get(method)(phi_in, phi_out, statistics, **options)


__all__ = [
    "NULL_CENTRES",
    "PAIR_INTERVALS",
    "Fit",
    "PairInterval",
    "pair_bootstrap",
    "pair_interval",
    "pair_jackknife",
    "permutation",
    "role_swaps",
]
