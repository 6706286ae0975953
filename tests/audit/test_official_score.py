"""The organisers' NeurIPS 2023 forgetting quality (issue 27), on cases whose answer follows
from the rules: plain rates, grid thresholds and intervals, one-zero rules discarded,
perfect separation and the 1% range rule at the cap, buckets with an N-dependent ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.metrics.audit_stats import (
    OFFICIAL_CAP,
    challenge_score,
    forgetting_quality,
    official_epsilon_from_rates,
    official_epsilon_scores,
    official_example_epsilon,
    official_forgetting_quality,
    official_last_edge,
)

DELTA = 1e-5


def test_identical_samples_have_epsilon_zero():
    rng = np.random.default_rng(0)
    values = rng.normal(size=8)
    # every rule calls the same share of each side positive: no rule beats chance
    assert official_example_epsilon(values, values.copy()) == 0.0
    quality, eps, scores = official_forgetting_quality(
        np.tile(values, (5, 1)).T, np.tile(values, (5, 1)).T
    )
    assert quality == 1.0 and np.all(eps == 0) and np.all(scores == 1)


def test_identical_constant_samples_leave_no_rule_and_score_one():
    # every rule has FPR = 1 and FNR = 0 or the reverse: all discarded, nothing tells them apart
    assert official_example_epsilon(np.full(8, 3.0), np.full(8, 3.0)) == 0.0


def test_perfectly_separated_samples_hit_the_cap_and_score_zero():
    u, r = np.linspace(5, 6, 8), np.linspace(0, 1, 8)
    assert official_example_epsilon(u, r) == OFFICIAL_CAP
    assert official_example_epsilon(r, u) == OFFICIAL_CAP  # the positive side follows the median
    quality, _, scores = official_forgetting_quality(u[:, None], r[:, None])
    assert quality == 0.0 and scores[0] == 0.0


def test_fpr_and_fnr_zero_is_infinite_before_the_clip():
    assert official_epsilon_from_rates([0.0, 0.5], [0.0, 0.5]) == math.inf
    assert official_example_epsilon(np.linspace(5, 6, 8), np.linspace(0, 1, 8), cap=7.0) == 7.0


def test_a_rule_with_exactly_one_zero_rate_is_discarded():
    assert official_epsilon_from_rates([0.0, 0.5], [0.25, 0.5]) == 0.0
    assert official_epsilon_from_rates([0.25], [0.0]) == 0.0
    # one retrained output inside the unlearned range: the rules that exclude it have FPR = 0
    # and are dropped, so the best surviving rule has FPR = FNR = 1/8: log(7 - 8 delta)
    u = np.linspace(1, 2, 8)
    r = np.array([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.5])
    assert official_example_epsilon(u, r) == pytest.approx(math.log(7 - 8 * DELTA), abs=1e-9)


def test_epsilon_from_rates_formula():
    fpr, fnr = 0.1, 0.3
    expected = max(
        math.log(1 - DELTA - fpr) - math.log(fnr), math.log(1 - DELTA - fnr) - math.log(fpr)
    )
    assert official_epsilon_from_rates([fpr], [fnr]) == pytest.approx(expected)
    # FPR = 1: the first term's argument is negative and does not count
    assert official_epsilon_from_rates([1.0], [0.5]) == 0.0


def test_one_outlier():
    # the retrained outputs 0, 1/7, ..., 1; the unlearned ones the same with the top moved to 5.
    # The best interval holds the peakier (retrained) 1/7..1: FNR = 1/8, FPR = 6/8, so
    # epsilon = log(1 - delta - 6/8) - log(1/8) = log(2 - 8 delta); thresholds give ~0.
    r = np.linspace(0, 1, 8)
    u = r.copy()
    u[-1] = 5.0
    eps = official_example_epsilon(u, r)
    assert eps == pytest.approx(math.log(2 - 8 * DELTA), abs=1e-9)
    assert official_epsilon_scores([eps], 8)[0] == 0.5


def test_ties_fall_on_the_same_side_of_every_rule():
    # 0 / 1 outputs, 6 of 8 unlearned at 1 and 2 of 8 retrained: the best rule ">= 1" has
    # FPR = FNR = 1/4, epsilon = log(3 - 4 delta), bucket 2, score 1/4
    u = np.array([0.0] * 2 + [1.0] * 6)
    r = np.array([0.0] * 6 + [1.0] * 2)
    eps = official_example_epsilon(u, r)
    assert eps == pytest.approx(math.log(3 - 4 * DELTA), abs=1e-9)
    assert official_epsilon_scores([eps], 8)[0] == 0.25
    assert (
        official_example_epsilon(np.array([0.0] * 4 + [1.0] * 4), np.array([0.0] * 4 + [1.0] * 4))
        == 0.0
    )


def test_the_one_percent_range_rule():
    u = np.array([0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0])
    narrow = 0.5 + np.linspace(0, 0.0099, 8)  # range 0.99% of the other's
    assert official_example_epsilon(u, narrow) == OFFICIAL_CAP
    wide = 0.5 + np.linspace(0, 0.011, 8)  # 1.1%: epsilon is computed from the rules
    assert official_example_epsilon(u, wide) < OFFICIAL_CAP
    # one side constant, the other not: under 1% as well
    assert official_example_epsilon(np.linspace(0, 1, 8), np.full(8, 0.5)) == OFFICIAL_CAP


@pytest.mark.parametrize(("n", "last", "lowest"), [(8, 2.0, 2.0**-3), (512, 7.0, 2.0**-13)])
def test_bucket_ceiling(n, last, lowest):
    assert official_last_edge(n) == last  # ceil(log(N - 1))
    below, at, beyond = last - 1e-9, last, OFFICIAL_CAP
    assert list(official_epsilon_scores([0.0, 0.49, 0.5, below, at, beyond], n)) == [
        1.0,
        1.0,
        0.5,
        lowest,
        0.0,
        0.0,
    ]


def test_the_largest_finite_epsilon_at_n8_scores_the_last_bucket():
    # N = 8: the smallest non-zero rate is 1/8, so a finite epsilon is at most log(7 - 8 delta)
    # < 2 = the ceiling: it scores 2^-3, and only the cap scores 0
    assert official_epsilon_scores([math.log(7 - 8 * DELTA)], 8)[0] == 0.125


def test_f_is_the_mean_and_the_final_score_multiplies_the_accuracy_ratios():
    u = np.column_stack([np.linspace(5, 6, 8), np.linspace(0, 1, 8), np.linspace(0, 1, 8)])
    r = np.column_stack([np.linspace(0, 1, 8), np.linspace(0, 1, 8), np.linspace(0, 1, 8)])
    quality, _, scores = official_forgetting_quality(u, r)
    assert list(scores) == [0.0, 1.0, 1.0]
    assert quality == pytest.approx(2 / 3)
    assert challenge_score(quality, 90.0, 100.0, 80.0, 100.0) == pytest.approx(2 / 3 * 0.72)


def test_ours_and_theirs_differ_where_documented():
    # N = 8, perfectly separated: theirs 0 (the cap), ours 0.5 (Clopper-Pearson rates)
    u, r = np.linspace(5, 6, 8)[:, None], np.linspace(0, 1, 8)[:, None]
    assert official_forgetting_quality(u, r)[0] == 0.0
    assert forgetting_quality(u, r)[0] == 0.5


def test_shape_errors():
    with pytest.raises(ValueError):
        official_forgetting_quality(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        official_last_edge(1)
