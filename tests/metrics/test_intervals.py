"""Intervals over seeds stay inside the metric's range (where Student-t does not), and a
difference is called a beat only with enough seeds for the interval to mean something."""

import math

import pytest
from scipy import stats

from unlearnkit.metrics import MIN_SEEDS_FOR_CLAIM, mean_ci95, paired_verdict

# ToW-like values in [0, 1] with one far-off seed: the published failure cases
CASES = {
    2: [0.242, 0.998],
    3: [0.05, 0.99, 0.98],
    10: [0.999, 0.998, 0.997, 0.62, 0.999, 0.996, 0.998, 0.97, 0.999, 0.995],
}


def student_t(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


@pytest.mark.parametrize("n", sorted(CASES))
def test_interval_stays_in_the_metrics_range(n):
    values = CASES[n]
    t_low, t_high = student_t(values)
    assert t_low < 0 or t_high > 1  # the old interval leaves [0, 1] on these very values
    mean, (low, high) = mean_ci95(values)
    assert 0 <= min(values) <= low <= mean <= high <= max(values) <= 1


@pytest.mark.parametrize("n", sorted(CASES))
def test_interval_of_differences_stays_in_their_range(n):
    diffs = [v - 1.0 for v in CASES[n]]  # ToW differences live in [-1, 1]
    _, (low, high) = mean_ci95(diffs)
    assert -1 <= min(diffs) <= low <= high <= max(diffs) <= 0


def test_interval_narrows_with_more_seeds_of_the_same_spread():
    few = mean_ci95([0.9, 1.0] * 2)[1]
    many = mean_ci95([0.9, 1.0] * 10)[1]
    assert many[1] - many[0] < few[1] - few[0]


def test_no_claim_below_the_minimum_seeds():
    assert MIN_SEEDS_FOR_CLAIM == 6  # 2 / 2**6 < 0.05 <= 2 / 2**5: the sign test's threshold
    for n in (2, 3, MIN_SEEDS_FOR_CLAIM - 1):
        assert paired_verdict([0.5] * n).startswith("too few seeds")
        assert f"n = {n}" in paired_verdict([0.5] * n)


def test_verdicts_with_enough_seeds():
    assert paired_verdict([0.1, 0.2, 0.05, 0.3, 0.1, 0.2]) == "beats"
    assert paired_verdict([-0.1, -0.2, -0.05, -0.3, -0.1, -0.2]) == "worse"
    assert paired_verdict([0.1, -0.2, 0.05, -0.3, 0.1, 0.2, -0.1, 0.0]) == "no difference shown"
