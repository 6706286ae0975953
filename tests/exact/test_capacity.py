"""Deletion-capacity closed forms and the Monte Carlo simulator agree."""

from __future__ import annotations

import pytest

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.capacity import (
    harmonic,
    s3t_capacity,
    simulate_capacity,
    sisa_capacity,
)
from unlearnkit.exact.sequences import cyclic_sequences


def test_closed_forms_match_the_paper_example() -> None:
    assert harmonic(1) == 1.0 and harmonic(3) == pytest.approx(11 / 6)
    assert sisa_capacity(5, 4) == pytest.approx(45.67, abs=0.01)
    assert s3t_capacity(5, 4, 4) == pytest.approx(71.95, abs=0.01)
    assert s3t_capacity(5, 4, 1) == sisa_capacity(5, 4)
    assert s3t_capacity(5, 4, 9) == s3t_capacity(5, 4, 4)  # B' = min(B, L)


@pytest.mark.parametrize("m,L,B", [(5, 4, 1), (5, 4, 4), (3, 3, 2), (2, 5, 8)])
def test_simulation_agrees_with_theory(m: int, L: int, B: int) -> None:
    seqs = cyclic_sequences(L, min(B, 120))
    sim = simulate_capacity(m, L, seqs, trials=3000, seed=1)
    theory = s3t_capacity(m, L, B)
    assert abs(sim.mean - theory) < max(4 * sim.stderr, 0.03 * theory)
    assert sim.live_curve[0] == m and sim.live_curve[-1] == 0


def test_simulator_detects_a_wrong_formula() -> None:
    """Power check: the simulator separates SISA from S3T, so a swapped formula would fail."""
    sim = simulate_capacity(5, 4, 4, trials=2000)
    assert abs(sim.mean - sisa_capacity(5, 4)) > 10 * sim.stderr


def test_prior_aware_sequences_last_longer_under_that_prior() -> None:
    prior = [0.7, 0.1, 0.1, 0.1]
    matched = simulate_capacity(3, 4, 2, prior=prior, trials=2000)
    naive = simulate_capacity(3, 4, [(0, 1, 2, 3), (1, 2, 3, 0)], prior=prior, trials=2000)
    assert matched.mean > 1.2 * naive.mean
    assert matched.mean - naive.mean > 10 * (matched.stderr + naive.stderr)


def test_bad_arguments() -> None:
    with pytest.raises(UnlearnkitError, match="m="):
        sisa_capacity(0, 4)
    with pytest.raises(UnlearnkitError, match="trials"):
        simulate_capacity(2, 2, trials=0)
    with pytest.raises(UnlearnkitError, match="prior"):
        simulate_capacity(2, 2, prior=[0.2, 0.2])
