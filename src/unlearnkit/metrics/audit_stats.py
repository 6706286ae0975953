"""The statistics of a per-example unlearning audit: pure numpy / scipy, no models.

Two tests, both asking "can the outputs of unlearned models on a forget example be told apart
from the outputs of models that never saw it?" (docs/audit.md has the definitions and sources):

* **U-LiRA** (Hayes et al. 2024, arXiv 2403.01218, on LiRA, Carlini et al. 2022): per example,
  Gaussians fitted to the logit-scaled confidence of shadow models that unlearned it ("in") and
  of models retrained without it ("out"); a target model's output is scored by the
  log-likelihood ratio; AUC and TPR at a low FPR over (model, example) pairs, bootstrap CIs.
* **The NeurIPS 2023 unlearning challenge score** (Triantafillou et al. 2024, arXiv 2406.09073):
  per forget example, an epsilon from the error rates of threshold decision rules separating N
  unlearned from N retrained models, bucketed and scored 2^-bucket; F = mean over examples;
  final score F x (RA_U / RA_R) x (TA_U / TA_R).

Every function takes and returns numpy arrays, so each is tested on cases with known answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats
from scipy.special import logsumexp

Array = np.ndarray
RateEstimate = Literal["clopper_pearson", "empirical"]
VarianceMode = Literal["per_example", "global"]


# -- the statistic every model output is reduced to ----------------------------------------------
def logit_confidence(logits: Array, labels: Array) -> Array:
    """phi = log(p_y / (1 - p_y)) per row, computed stably as z_y - logsumexp(z_j, j != y).

    Exact even where p_y rounds to 0 or 1 in floating point (no softmax is formed).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"logits (n, classes) and labels (n,) expected, got {z.shape}, {y.shape}")
    if z.shape[1] < 2:
        raise ValueError("logit_confidence needs at least two classes")
    rows = np.arange(z.shape[0])
    true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    return true - logsumexp(others, axis=1)


# -- U-LiRA: per-example Gaussian likelihood ratio ------------------------------------------------
def gaussian_llr(values: Array, mu_in: Array, sd_in: Array, mu_out: Array, sd_out: Array) -> Array:
    """log N(v; mu_in, sd_in^2) - log N(v; mu_out, sd_out^2), elementwise (broadcasting)."""
    v = np.asarray(values, dtype=np.float64)
    # the normal log-density written out (scipy's logpdf costs more than the arithmetic, and the
    # audit's permutation interval calls this a thousand times per method); log(2 pi) cancels
    z_in, z_out = (v - mu_in) / sd_in, (v - mu_out) / sd_out
    return 0.5 * (z_out * z_out - z_in * z_in) + np.log(np.asarray(sd_out) / sd_in)


def _leave_one_out(phi: Array, min_sd: float, mode: VarianceMode) -> tuple[Array, Array, Array]:
    """Per (model k, example j): mean, sd and count of column j over the models other than k.

    ``phi`` is (..., K, n) with NaN where model k has no observation of example j (leading
    axes: independent audits, e.g. the role exchanges of a permutation interval).
    """
    seen = ~np.isnan(phi)
    x = np.where(seen, phi, 0.0)
    count = seen.sum(-2, keepdims=True) - seen  # others' count, (..., K, n)
    total = x.sum(-2, keepdims=True) - x
    square = (x * x).sum(-2, keepdims=True) - x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        var = (square - count * mean**2) / (count - 1)
    var = np.where(count >= 2, np.maximum(var, 0.0), np.nan)
    if mode == "global":
        # one variance for every example (LiRA's choice with few shadow models): the mean of the
        # per-example leave-one-out variances of each target model's row
        pooled = np.nanmean(np.where(seen, var, np.nan), axis=-1, keepdims=True)
        var = np.where(count >= 2, np.broadcast_to(pooled, var.shape), np.nan)
    return mean, np.maximum(np.sqrt(var), min_sd), count


def loo_llr(
    phi_in: Array,
    phi_out: Array,
    *,
    min_sd: float = 1e-3,
    variance: VarianceMode = "per_example",
) -> tuple[Array, Array]:
    """U-LiRA scores with leave-one-out Gaussians: each target model is scored by Gaussians
    fitted on the other shadow models only.

    ``phi_in[k, j]``: model k's phi on example j after k unlearned j (NaN if j was not in k's
    forget set); ``phi_out[k, j]``: the model retrained without k's forget set, same pattern.
    Returns (llr_in, llr_out), both (K, n): the statistic of each unlearned ("positive") and each
    retrained ("negative") target; NaN where fewer than two other models observed the example.
    Leading axes (..., K, n) are independent audits scored at once.
    """
    phi_in, phi_out = np.asarray(phi_in, float), np.asarray(phi_out, float)
    if phi_in.shape != phi_out.shape or phi_in.ndim < 2:
        shapes = f"{phi_in.shape}, {phi_out.shape}"
        raise ValueError(f"phi_in and phi_out must be (K, n) alike: {shapes}")
    mu_i, sd_i, n_i = _leave_one_out(phi_in, min_sd, variance)
    mu_o, sd_o, n_o = _leave_one_out(phi_out, min_sd, variance)
    ok = (n_i >= 2) & (n_o >= 2)
    with np.errstate(invalid="ignore"):
        llr_in = np.where(ok, gaussian_llr(phi_in, mu_i, sd_i, mu_o, sd_o), np.nan)
        llr_out = np.where(ok, gaussian_llr(phi_out, mu_i, sd_i, mu_o, sd_o), np.nan)
    return llr_in, llr_out


def roc_auc(positives: Array, negatives: Array) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney U / (n_p n_n))."""
    p, n = np.asarray(positives, float).ravel(), np.asarray(negatives, float).ravel()
    if p.size == 0 or n.size == 0:
        return math.nan
    ordered = np.sort(n)  # per positive: negatives below it, and ties (counted half)
    below = np.searchsorted(ordered, p, side="left")
    up_to = np.searchsorted(ordered, p, side="right")
    return float((below.sum() + 0.5 * (up_to - below).sum()) / (p.size * n.size))


def tpr_at_fpr(positives: Array, negatives: Array, fpr: float) -> float:
    """The largest TPR of a rule "positive iff score > t" whose FPR on the negatives is <= fpr.

    With fewer than 1/fpr negatives no false positive is allowed, so t = max(negatives).
    """
    p, n = np.asarray(positives, float).ravel(), np.asarray(negatives, float).ravel()
    if p.size == 0 or n.size == 0:
        return math.nan
    allowed = math.floor(fpr * n.size + 1e-9)  # false positives the rule may make
    ordered = np.sort(n)[::-1]
    threshold = ordered[allowed] if allowed < n.size else -np.inf
    return float((p > threshold).mean())


def bootstrap_ci(
    statistic: Callable[[Array, Array], float],
    positives: Array,
    negatives: Array,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: tuple[Array, Array] | None = None,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(pos*, neg*)`` over resamples.

    Without ``groups`` each side is resampled by element. With ``groups`` (a group label per
    positive and per negative, e.g. the shadow model each score came from) whole groups are
    resampled (a cluster bootstrap): scores of one model are correlated, so resampling them one
    by one would make the interval too narrow.
    """
    p, n = np.asarray(positives, float).ravel(), np.asarray(negatives, float).ravel()
    if p.size == 0 or n.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = (
            (p[rng.integers(0, p.size, p.size)], n[rng.integers(0, n.size, n.size)])
            for _ in range(n_boot)
        )
    else:
        gp, gn = np.asarray(groups[0]).ravel(), np.asarray(groups[1]).ravel()
        labels = np.unique(np.concatenate([gp, gn]))
        p_by = {g: p[gp == g] for g in labels}
        n_by = {g: n[gn == g] for g in labels}

        def draw() -> tuple[Array, Array]:
            chosen = labels[rng.integers(0, labels.size, labels.size)]
            return (
                np.concatenate([p_by[g] for g in chosen]),
                np.concatenate([n_by[g] for g in chosen]),
            )

        draws = (draw() for _ in range(n_boot))
    values = np.array([statistic(dp, dn) for dp, dn in draws])
    tail = (1 - level) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return float(low), float(high)


# -- NeurIPS 2023 challenge: per-example epsilon and forgetting quality ---------------------------
def rule_counts(unlearned: Array, retrained: Array, double: bool = True) -> tuple[Array, Array]:
    """Error counts of every single- and double-threshold rule on one example's outputs.

    A rule calls an output "unlearned" when it falls in (t1, t2] (t1 < t2 taken from -inf, the
    midpoints between the sorted pooled outputs and +inf; t1 = -inf or t2 = +inf are the single
    thresholds) or, for its complement, outside that interval. Returns (false negatives:
    unlearned outputs called retrained, false positives: retrained outputs called unlearned),
    one entry per rule. ``double=False`` keeps the single-threshold rules only.
    """
    u, r = np.sort(np.asarray(unlearned, float)), np.sort(np.asarray(retrained, float))
    pooled = np.unique(np.concatenate([u, r]))
    cuts = np.concatenate([[-np.inf], (pooled[:-1] + pooled[1:]) / 2, [np.inf]])
    u_below = np.searchsorted(u, cuts, side="right")  # outputs <= cut
    r_below = np.searchsorted(r, cuts, side="right")
    i, j = np.triu_indices(cuts.size, k=1)  # every interval (cuts[i], cuts[j]]
    if not double:
        single = (i == 0) | (j == cuts.size - 1)
        i, j = i[single], j[single]
    u_inside, r_inside = u_below[j] - u_below[i], r_below[j] - r_below[i]
    fn = np.concatenate([u.size - u_inside, u_inside])  # interval rules, then complements
    fp = np.concatenate([r_inside, r.size - r_inside])
    return fn, fp


def clopper_pearson_upper(errors: Array, trials: int, alpha: float) -> Array:
    """One-sided (1 - alpha) Clopper-Pearson upper bound of an error rate from counts."""
    k = np.asarray(errors, float)
    with np.errstate(invalid="ignore"):
        upper = stats.beta.ppf(1 - alpha, k + 1, trials - k)
    return np.where(k >= trials, 1.0, upper)


def example_epsilon(
    unlearned: Array,
    retrained: Array,
    *,
    delta: float = 1e-5,
    rates: RateEstimate = "clopper_pearson",
    alpha: float = 0.05,
    cap: float | None = None,
    double: bool = True,
) -> float:
    """epsilon of one example: the max over decision rules of
    max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)), floored at 0.

    ``rates="clopper_pearson"`` takes each rate at its one-sided (1 - alpha) upper bound, so the
    value is a high-confidence lower bound and never infinite; ``"empirical"`` uses the counts
    with a zero rate replaced by 1/N (the smallest rate N models can show), so the largest value
    is log(N(1 - delta)). ``cap`` clips the result; ``double=False``: single thresholds only.
    """
    fn, fp = rule_counts(unlearned, retrained, double)
    n_u, n_r = np.asarray(unlearned).size, np.asarray(retrained).size
    if n_u == 0 or n_r == 0:
        return math.nan
    if rates == "clopper_pearson":
        # counts take N + 1 values: look the bounds up instead of evaluating ~N^2 quantiles
        fnr = clopper_pearson_upper(np.arange(n_u + 1), n_u, alpha)[fn]
        fpr = clopper_pearson_upper(np.arange(n_r + 1), n_r, alpha)[fp]
        fnr_div, fpr_div = fnr, fpr
    elif rates == "empirical":
        fnr, fpr = fn / n_u, fp / n_r
        fnr_div, fpr_div = np.maximum(fnr, 1 / n_u), np.maximum(fpr, 1 / n_r)
    else:
        raise ValueError(f"rates must be 'clopper_pearson' or 'empirical', got {rates!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log((1 - delta - fpr) / fnr_div)
        b = np.log((1 - delta - fnr) / fpr_div)
    values = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)], [0.0]])
    eps = float(max(values.max(), 0.0))
    return min(eps, cap) if cap is not None else eps


def epsilon_scores(epsilons: Array, width: float = 0.5) -> Array:
    """2^-bucket with bucket = floor(epsilon / width): 1 for epsilon < width, halving per bucket."""
    eps = np.asarray(epsilons, float)
    return np.power(2.0, -np.floor(eps / width))


def forgetting_quality(
    unlearned: Array,
    retrained: Array,
    *,
    delta: float = 1e-5,
    width: float = 0.5,
    rates: RateEstimate = "clopper_pearson",
    alpha: float = 0.05,
    cap: float | None = None,
    double: bool = True,
) -> tuple[float, Array, Array]:
    """F = mean over forget examples of 2^-bucket(epsilon).

    ``unlearned`` (N_u, n) and ``retrained`` (N_r, n): each model's output on each forget example.
    Returns (F, epsilon per example, score per example).
    """
    u, r = np.asarray(unlearned, float), np.asarray(retrained, float)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"unlearned and retrained must be (N, n) alike: {u.shape}, {r.shape}")
    eps = np.array(
        [
            example_epsilon(
                u[:, j], r[:, j], delta=delta, rates=rates, alpha=alpha, cap=cap, double=double
            )
            for j in range(u.shape[1])
        ]
    )
    scores = epsilon_scores(eps, width)
    return float(scores.mean()), eps, scores


def challenge_score(
    forgetting: float, retain_u: float, retain_r: float, test_u: float, test_r: float
) -> float:
    """The challenge's final score F x (RA_U / RA_R) x (TA_U / TA_R) (mean accuracies)."""
    return float(forgetting * (retain_u / retain_r) * (test_u / test_r))


# -- NeurIPS 2023 challenge, the organisers' definition ------------------------------------------
# Written from the description of the published evaluation (issue 27; Triantafillou et al. 2024),
# not from its code. Empirical rates, a grid of single thresholds and of intervals, rules with
# exactly one zero rate discarded, epsilon capped at 50 and buckets with a ceiling that depends
# on N. Beside it the functions above are our variant (Clopper-Pearson rates, every rule between
# the pooled outputs, no ceiling); docs/audit.md compares the two.
OFFICIAL_CAP = 50.0  # epsilon of a perfectly separating rule, of the 1% range rule
OFFICIAL_GRID_PER_UNIT = 100  # threshold / right-edge grid density
OFFICIAL_LEFT_EDGES = 400  # left edges per right edge
OFFICIAL_MARGIN = 2.0  # how far the interval edges reach beyond the peakier distribution
OFFICIAL_RANGE_RULE = 0.01  # smaller range under 1% of the larger: epsilon is the cap


def _unit_grid(low: float, high: float) -> Array:
    """Points from ``low`` to ``high`` (both included) at OFFICIAL_GRID_PER_UNIT per unit."""
    count = math.ceil((high - low) * OFFICIAL_GRID_PER_UNIT - 1e-9) + 1
    return np.linspace(low, high, max(count, 1))


def official_epsilon_from_rates(fpr: Array, fnr: Array, delta: float = 1e-5) -> float:
    """The largest epsilon over decision rules given their plain error rates.

    FPR = FNR = 0 (a rule that separates perfectly) is infinite; a rule with exactly one zero
    rate is discarded; otherwise max(0, log(1 - delta - FPR) - log FNR,
    log(1 - delta - FNR) - log FPR), a term with a non-positive argument counting as -inf.
    No surviving rule (every rule discarded) is 0: nothing tells the two apart.
    """
    fpr, fnr = np.asarray(fpr, float).ravel(), np.asarray(fnr, float).ravel()
    if np.any((fpr == 0) & (fnr == 0)):
        return math.inf
    keep = (fpr > 0) & (fnr > 0)
    if not keep.any():
        return 0.0
    f, n = fpr[keep], fnr[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.where(1 - delta - f > 0, 1 - delta - f, 0.0)) - np.log(n)
        b = np.log(np.where(1 - delta - n > 0, 1 - delta - n, 0.0)) - np.log(f)
    return float(max(0.0, a.max(), b.max()))


def _share_at_least(sorted_values: Array, edges: Array) -> Array:
    """Fraction of ``sorted_values`` >= each edge."""
    return 1 - np.searchsorted(sorted_values, edges, side="left") / sorted_values.size


def _share_inside(sorted_values: Array, left: Array, right: Array) -> Array:
    """Fraction of ``sorted_values`` in [left, right] (0 where left > right)."""
    inside = np.searchsorted(sorted_values, right, side="right") - np.searchsorted(
        sorted_values, left, side="left"
    )
    return np.maximum(inside, 0) / sorted_values.size


def official_example_epsilon(
    unlearned: Array, retrained: Array, *, delta: float = 1e-5, cap: float = OFFICIAL_CAP
) -> float:
    """epsilon of one forget example by the organisers' rules, clipped to [0, cap].

    * Positive side: the distribution with the larger median (ties: the unlearned one).
    * Smaller range under 1% of the larger: ``cap``.
    * Single thresholds on a grid over the pooled range at 100 per unit: "positive iff x >= t".
    * Intervals [a, b] as wide as the peakier distribution (the smaller range; ties: the positive
      side), calling the inside the peakier one: right edges b on a grid from (its min + width
      - 2) to (its max + 2) at 100 per unit, for each 400 left edges a evenly within
      +-2 of (b - width).
    * Plain empirical rates; ``official_epsilon_from_rates`` turns them into epsilon.
    """
    u, r = np.sort(np.asarray(unlearned, float)), np.sort(np.asarray(retrained, float))
    if u.size == 0 or r.size == 0:
        return math.nan
    pos, neg = (u, r) if np.median(u) >= np.median(r) else (r, u)
    pos_range, neg_range = pos[-1] - pos[0], neg[-1] - neg[0]
    if min(pos_range, neg_range) < OFFICIAL_RANGE_RULE * max(pos_range, neg_range):
        return float(cap)
    thresholds = _unit_grid(min(u[0], r[0]), max(u[-1], r[-1]))
    fpr = [_share_at_least(neg, thresholds)]
    fnr = [1 - _share_at_least(pos, thresholds)]
    peaky, other = (pos, neg) if pos_range <= neg_range else (neg, pos)
    width = peaky[-1] - peaky[0]
    right = _unit_grid(peaky[0] + width - OFFICIAL_MARGIN, peaky[-1] + OFFICIAL_MARGIN)
    offsets = np.linspace(-OFFICIAL_MARGIN, OFFICIAL_MARGIN, OFFICIAL_LEFT_EDGES)
    left = (right - width)[:, None] + offsets[None, :]
    right = np.broadcast_to(right[:, None], left.shape)
    fnr.append(1 - _share_inside(peaky, left, right).ravel())
    fpr.append(_share_inside(other, left, right).ravel())
    eps = official_epsilon_from_rates(np.concatenate(fpr), np.concatenate(fnr), delta)
    return float(min(max(eps, 0.0), cap))


def official_last_edge(n_models: int) -> float:
    """The bucket ceiling ceil(log(N - 1)): epsilon at or beyond it scores 0."""
    if n_models < 2:
        raise ValueError(f"the official buckets need N >= 2 models per side, got {n_models}")
    return float(math.ceil(math.log(n_models - 1))) if n_models > 2 else 0.0


def official_epsilon_scores(epsilons: Array, n_models: int, width: float = 0.5) -> Array:
    """2^-k for epsilon in bucket k = floor(epsilon / width) below the ceiling, 0 at or beyond."""
    eps = np.asarray(epsilons, float)
    last = official_last_edge(n_models)
    return np.where(eps >= last, 0.0, np.power(2.0, -np.floor(eps / width)))


def official_forgetting_quality(
    unlearned: Array,
    retrained: Array,
    *,
    delta: float = 1e-5,
    width: float = 0.5,
    cap: float = OFFICIAL_CAP,
) -> tuple[float, Array, Array]:
    """The organisers' F: mean over forget examples of the bucket score of their epsilon.

    ``unlearned`` (N_u, n) and ``retrained`` (N_r, n); the bucket ceiling uses
    N = min(N_u, N_r). Returns (F, epsilon per example, score per example).
    """
    u, r = np.asarray(unlearned, float), np.asarray(retrained, float)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"unlearned and retrained must be (N, n) alike: {u.shape}, {r.shape}")
    eps = np.array(
        [
            official_example_epsilon(u[:, j], r[:, j], delta=delta, cap=cap)
            for j in range(u.shape[1])
        ]
    )
    scores = official_epsilon_scores(eps, min(u.shape[0], r.shape[0]), width)
    return float(scores.mean()), eps, scores


def mean_bootstrap_ci(
    values: Array, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over resamples (e.g. F over examples)."""
    v = np.asarray(values, float).ravel()
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


__all__ = [
    "OFFICIAL_CAP",
    "bootstrap_ci",
    "challenge_score",
    "clopper_pearson_upper",
    "epsilon_scores",
    "example_epsilon",
    "forgetting_quality",
    "gaussian_llr",
    "logit_confidence",
    "loo_llr",
    "mean_bootstrap_ci",
    "official_epsilon_from_rates",
    "official_epsilon_scores",
    "official_example_epsilon",
    "official_forgetting_quality",
    "official_last_edge",
    "roc_auc",
    "rule_counts",
    "tpr_at_fpr",
]
