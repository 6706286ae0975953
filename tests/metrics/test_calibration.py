"""ECE and the temperature fit on cases whose answer follows from the definitions."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.metrics.calibration import ece_from_logits, fit_temperature


def logits_with_top(p: float, classes: int = 2, n: int = 1, label: int = 0) -> torch.Tensor:
    """n rows whose softmax puts ``p`` on ``label`` and spreads the rest evenly."""
    rest = (1 - p) / (classes - 1)
    row = torch.full((classes,), math.log(rest))
    row[label] = math.log(p)
    return row.repeat(n, 1)


def test_confident_and_right_is_calibrated_confident_and_wrong_is_not():
    z = logits_with_top(1 - 1e-12, n=4)
    assert ece_from_logits(z, torch.zeros(4, dtype=torch.long)) == pytest.approx(0, abs=1e-6)
    assert ece_from_logits(z, torch.ones(4, dtype=torch.long)) == pytest.approx(1, abs=1e-6)


def test_ece_is_the_weighted_gap_per_bin():
    # 10 rows at confidence 0.9 with 8 right (gap 0.1) and 10 at 0.6 with 6 right (gap 0):
    # ECE = 0.5 * 0.1 + 0.5 * 0
    z = torch.cat([logits_with_top(0.9, n=10), logits_with_top(0.6, n=10)])
    y = torch.tensor([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    assert ece_from_logits(z, y) == pytest.approx(0.05, abs=1e-6)
    # one bin for all: |14/20 - 0.75|
    assert ece_from_logits(z, y, bins=1) == pytest.approx(0.05, abs=1e-6)


def test_a_flat_softmax_scores_its_accuracy_minus_its_confidence():
    """The one-hot linearized model's failure: right every time at top confidence ~0.2."""
    z = torch.tensor([[0.9] + [0.0] * 9]).repeat(50, 1)
    top = float(torch.softmax(z[0], 0)[0])
    assert top < 0.3
    assert ece_from_logits(z, torch.zeros(50, dtype=torch.long)) == pytest.approx(1 - top)


def test_fit_temperature_recovers_the_generating_temperature():
    g = torch.Generator().manual_seed(0)
    base = 3 * torch.randn(20_000, 5, generator=g)
    true_t = 2.5
    y = torch.multinomial(torch.softmax(base / true_t, 1), 1, generator=g).squeeze(1)
    assert fit_temperature(base, y) == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(base / true_t, y) == pytest.approx(1.0, rel=0.05)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        ece_from_logits(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
