"""Audit statistics on cases with known answers (hand-computed values, null and separated)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from unlearnkit.metrics.audit_stats import (
    bootstrap_ci,
    challenge_score,
    clopper_pearson_upper,
    epsilon_scores,
    example_epsilon,
    forgetting_quality,
    gaussian_llr,
    logit_confidence,
    loo_llr,
    mean_bootstrap_ci,
    roc_auc,
    rule_counts,
    tpr_at_fpr,
)


def test_logit_confidence_matches_definition_and_is_stable():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [800.0, 0.0, 0.0], [-800.0, 0.0, 0.0]])
    labels = np.array([0, 1, 0, 0])
    phi = logit_confidence(logits, labels)
    p = np.exp(2.0) / (np.exp(2.0) + 1 + np.exp(-1.0))
    assert phi[0] == pytest.approx(math.log(p / (1 - p)))
    assert phi[1] == pytest.approx(math.log(0.5))  # p = 1/3: log((1/3)/(2/3))
    # softmax would round p to 1 / 0 here; the stable form is exact: 800 - log 2, -800 - log 2
    assert phi[2] == pytest.approx(800 - math.log(2))
    assert phi[3] == pytest.approx(-800 - math.log(2))
    with pytest.raises(ValueError):
        logit_confidence(np.zeros((2, 1)), np.zeros(2, int))


def test_gaussian_llr_hand_computed():
    # equal variances: llr = ((v - mu_out)^2 - (v - mu_in)^2) / (2 sd^2)
    assert gaussian_llr(1.0, 1.0, 1.0, -1.0, 1.0) == pytest.approx(2.0)
    assert gaussian_llr(0.0, 1.0, 1.0, -1.0, 1.0) == pytest.approx(0.0)
    assert gaussian_llr(0.0, 0.0, 1.0, 0.0, 2.0) == pytest.approx(math.log(2))


def test_auc_and_tpr_hand_computed():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 3], [2, 2]) == 0.5
    assert roc_auc([1, 1], [1, 1]) == 0.5  # ties count half
    assert roc_auc([2, 3], [1, 2]) == pytest.approx(0.875)  # 3 wins + 1 tie: 3.5 / 4
    neg = np.arange(100.0)  # FPR 1% allows 1 false positive: threshold = 98
    assert tpr_at_fpr([98.5, 99.5, 50, 97], neg, 0.01) == 0.5
    assert tpr_at_fpr([98.5, 99.0, 100, 101], neg, 0.001) == 0.5  # none allowed: > 99
    assert tpr_at_fpr([0.0], neg, 1.0) == 1.0


def test_loo_llr_uses_only_the_other_models():
    # example 0 seen by models 0..2 in and out; model 0's scores from models 1, 2 only
    phi_in = np.array([[10.0], [1.0], [3.0]])
    phi_out = np.array([[-10.0], [-1.0], [-3.0]])
    llr_in, llr_out = loo_llr(phi_in, phi_out)
    mu_in, mu_out, sd = 2.0, -2.0, math.sqrt(2.0)  # (1, 3) and (-1, -3): sample sd sqrt(2)
    assert llr_in[0, 0] == pytest.approx(gaussian_llr(10.0, mu_in, sd, mu_out, sd))
    assert llr_out[0, 0] == pytest.approx(gaussian_llr(-10.0, mu_in, sd, mu_out, sd))
    # only one other model observes example 0 -> no fit, NaN
    llr_in, _ = loo_llr(np.array([[1.0], [2.0]]), np.array([[0.0], [1.0]]))
    assert np.isnan(llr_in).all()
    with pytest.raises(ValueError):
        loo_llr(np.zeros((2, 3)), np.zeros((3, 2)))


def _ulira(separation: float, k: int = 16, n: int = 200, seed: int = 0, variance="per_example"):
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 2, n)  # examples differ in difficulty
    phi_in = centre + separation + rng.normal(0, 1, (k, n))
    phi_out = centre + rng.normal(0, 1, (k, n))
    mask = rng.random((k, n)) < 0.5  # each example in half the models' forget sets
    phi_in[~mask], phi_out[~mask] = np.nan, np.nan
    llr_in, llr_out = loo_llr(phi_in, phi_out, variance=variance)
    return llr_in[~np.isnan(llr_in)], llr_out[~np.isnan(llr_out)]


@pytest.mark.parametrize("variance", ["per_example", "global"])
def test_ulira_null_gives_chance_and_separation_gives_one(variance):
    pos, neg = _ulira(0.0, variance=variance)
    auc = roc_auc(pos, neg)
    low, high = bootstrap_ci(roc_auc, pos, neg, n_boot=200)
    assert abs(auc - 0.5) < 0.05 and low < 0.5 < high
    assert tpr_at_fpr(pos, neg, 0.01) < 0.05
    pos, neg = _ulira(6.0, variance=variance)
    assert roc_auc(pos, neg) > 0.99
    assert tpr_at_fpr(pos, neg, 0.01) > 0.9


def test_cluster_bootstrap_is_wider_when_scores_share_a_model():
    rng = np.random.default_rng(3)
    # 8 pairs of models; each model shifts all 50 of its scores
    shift_pos, shift_neg = rng.normal(0, 1, 8), rng.normal(0, 1, 8)
    groups = np.repeat(np.arange(8), 50)
    pos = shift_pos[groups] + rng.normal(0, 0.2, groups.size)
    neg = shift_neg[groups] + rng.normal(0, 0.2, groups.size)
    plain = bootstrap_ci(roc_auc, pos, neg, n_boot=200)
    cluster = bootstrap_ci(roc_auc, pos, neg, n_boot=200, groups=(groups, groups))
    assert cluster[0] <= plain[0] and plain[1] <= cluster[1]


def test_rule_counts_hand_computed():
    # u = [1, 2], r = [3]: cuts -inf, 1.5, 2.5, +inf; intervals (i, j) and complements
    fn, fp = rule_counts([1.0, 2.0], [3.0])
    pairs = set(zip(fn.tolist(), fp.tolist(), strict=True))
    assert (0, 0) in pairs  # "unlearned iff <= 2.5" separates perfectly
    assert (2, 1) in pairs  # "unlearned iff > 2.5": every output misjudged
    assert len(fn) == 2 * 6  # 4 cuts -> 6 intervals, each with its complement
    fn, fp = rule_counts([1.0, 2.0], [3.0], double=False)
    assert len(fn) == 2 * 5  # the intervals open at one end: 3 + 2 (the whole line once)
    assert (0, 0) in set(zip(fn.tolist(), fp.tolist(), strict=True))


def test_clopper_pearson_upper_known_values():
    # 0 errors in n: upper bound 1 - alpha^(1/n); all errors: 1
    assert clopper_pearson_upper(np.array([0]), 8, 0.05)[0] == pytest.approx(1 - 0.05 ** (1 / 8))
    assert clopper_pearson_upper(np.array([8]), 8, 0.05)[0] == 1.0
    assert clopper_pearson_upper(np.array([3]), 10, 0.05)[0] == pytest.approx(
        stats.beta.ppf(0.95, 4, 7)
    )


def test_example_epsilon_hand_computed():
    # perfectly separated, N = 4 per side, empirical rates: zero rates -> 1/4, eps = log(4(1-d))
    u, r = [5.0, 6, 7, 8], [1.0, 2, 3, 4]
    eps = example_epsilon(u, r, rates="empirical", delta=1e-5)
    assert eps == pytest.approx(math.log((1 - 1e-5) / 0.25))
    assert example_epsilon(u, r, rates="empirical", cap=1.0) == 1.0
    # Clopper-Pearson: both rates at their upper bound for 0 errors in 4 -> below 1/2, eps 0
    assert example_epsilon(u, r) == 0.0
    # with 16 per side perfectly separated: eps = log((1 - d - c) / c), c = 1 - 0.05^(1/16)
    c = 1 - 0.05 ** (1 / 16)
    eps = example_epsilon(np.arange(16.0) + 100, np.arange(16.0))
    assert eps == pytest.approx(math.log((1 - 1e-5 - c) / c))
    # identical outputs: no rule does better than chance, eps = 0
    assert example_epsilon([1.0] * 8, [1.0] * 8, rates="empirical") == pytest.approx(0.0, abs=1e-4)


def test_epsilon_scores_buckets():
    assert epsilon_scores(np.array([0.0, 0.49, 0.5, 0.99, 1.0, 2.6])).tolist() == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        1 / 32,
    ]


def test_forgetting_quality_null_and_separated():
    rng = np.random.default_rng(1)
    same_u, same_r = rng.normal(0, 1, (64, 40)), rng.normal(0, 1, (64, 40))
    f_null, eps, scores = forgetting_quality(same_u, same_r)
    assert f_null > 0.9 and eps.shape == scores.shape == (40,)
    apart_u = rng.normal(8, 1, (64, 40))
    f_apart, eps, scores = forgetting_quality(apart_u, same_r)
    assert f_apart < 0.1
    assert (eps > 2.5).all()  # 0 errors in 64 each side: log((1-d-c)/c), c = 1 - 0.05^(1/64)
    low, high = mean_bootstrap_ci(scores, n_boot=200)
    assert low <= f_apart <= high


def test_double_thresholds_see_a_spread_better_than_single_ones():
    rng = np.random.default_rng(2)
    retrained = rng.normal(0, 1, (64, 30))
    spread = rng.normal(0, 4, (64, 30))  # same centre, four times the spread
    f_double, _, _ = forgetting_quality(spread, retrained)
    f_single, _, _ = forgetting_quality(spread, retrained, double=False)
    assert f_double < f_single < 0.5  # measured: 0.06 and 0.16
    # the price of the richer family: under the null it finds more chance separations
    null = rng.normal(0, 1, (64, 30))
    assert forgetting_quality(null, retrained, double=False)[0] == 1.0


def test_challenge_score_hand_computed():
    assert challenge_score(0.5, 90.0, 100.0, 80.0, 100.0) == pytest.approx(0.36)
    assert challenge_score(1.0, 99.0, 99.0, 90.0, 90.0) == 1.0
