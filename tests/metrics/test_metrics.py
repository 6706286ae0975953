import copy
import math
import time

import pytest
import torch
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.metrics import (
    censored_summary,
    censored_text,
    mean_ci95,
    measure_cost,
    mia_efficacy,
    params_touched,
    tow,
    tow_mia,
)
from unlearnkit.metrics.relearn import relearn_epochs
from unlearnkit.models import create_model, select_trainable
from unlearnkit.training import TrainConfig, accuracy, train


def test_tow_by_hand():
    ref = {"retain": 100.0, "forget": 0.0, "test": 90.0}
    assert tow(ref, ref) == 1.0
    acc = {"retain": 90.0, "forget": 20.0, "test": 80.0}
    assert math.isclose(tow(acc, ref), 0.9 * 0.8 * 0.9)
    assert math.isclose(tow_mia(acc, 50.0, ref, 100.0), 0.5 * 0.9 * 0.9)


def test_ci95_is_the_bootstrap_of_the_mean():
    mean, ci = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    # means of 3 draws with replacement: the all-1 and all-3 draws each have probability
    # 1/27 > 2.5%, so with 3 seeds the interval is the values' own span
    assert ci == pytest.approx((1.0, 3.0), abs=1e-9)
    # with 8 seeds the extremes (1/8**8) are far beyond 2.5%: the interval is inside the span
    _, wide = mean_ci95([1.0, 2.0, 3.0, 2.0, 1.0, 3.0, 2.0, 2.0])
    assert 1.0 < wide[0] < 2.0 < wide[1] < 3.0
    assert mean_ci95([0.5]) == (0.5, None)
    assert mean_ci95([1.0, 2.0, 3.0]) == (mean, ci)  # deterministic


class Oracle(nn.Module):
    """Confident on 'member' inputs (feature 0 = 1), unsure otherwise: an obvious MIA target."""

    def forward(self, x):
        member = x[:, 0, 0, 0:1]
        return torch.cat([member * 10, torch.zeros_like(member)], 1)


def _split(n, member):
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = float(member)
    return ArraySplit(x, torch.zeros(n, dtype=torch.long), torch.arange(n))


def test_mia_separates_members_from_non_members():
    retain, test = _split(50, True), _split(50, False)
    assert mia_efficacy(Oracle(), retain, _split(20, True), test) < 10
    assert mia_efficacy(Oracle(), retain, _split(20, False), test) > 90


def test_relearn_epochs(digits):
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8)
    names = select_trainable(model, "full")
    # trained on the rest of D (so BatchNorm statistics are real), then asked to learn
    # shifted labels on 200 samples it never saw: relearning starts near 0%
    train(model, digits.train.subset(torch.arange(200, len(digits.train))), TrainConfig(epochs=3))
    part = digits.train.subset(torch.arange(200))
    forget = ArraySplit(part.x, (part.y + 1) % 10, part.ids)
    start = copy.deepcopy(model.state_dict())
    assert relearn_epochs(model, forget, names, threshold=100.0, max_epochs=1) is None
    got = relearn_epochs(model, forget, names, threshold=50.0, max_epochs=20, lr=0.02)
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())  # on a copy
    # reference: one epoch at a time (seed + epoch), BatchNorm in eval mode, the first epoch
    # at or above 50%
    curve = []
    for epoch in range(1, 21):
        cfg = TrainConfig(epochs=1, lr=0.02, seed=epoch, schedule="constant")
        train(model, forget, cfg, names, eval_mode=True)
        curve.append(accuracy(model, forget))
    assert curve[0] < 50 and max(curve) >= 50  # so the answer is a count, neither 0 nor None
    assert got == float(next(i for i, a in enumerate(curve, 1) if a >= 50))
    train(model, forget, TrainConfig(epochs=30, lr=0.05))
    assert relearn_epochs(model, forget, names, threshold=50.0) == 0.0


def test_cost_sees_the_time_and_memory_the_block_used():
    with measure_cost() as cost:
        big = torch.ones(50_000_000)  # 200 MB, every page written
        time.sleep(0.05)  # held for ten sampling intervals
        del big
    assert cost.time_s >= 0.05
    assert 150 <= cost.peak_mem_mb < 1000  # the 200 MB block, not the process's whole RSS
    with measure_cost() as idle:
        pass
    assert idle.peak_mem_mb < 50 and idle.time_s < cost.time_s


def test_params_touched_counts_changed_entries():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.weight[0, 0] += 1
    assert params_touched(a, b) == 1


def test_censored_relearn_is_reported_not_dropped():
    # the published case: random_label relearned [None, None, 19] and printed 19.0
    entry = censored_summary([None, None, 19.0], budget=20)
    assert entry["mean"] is None  # no plain mean over the seeds that relearned
    assert entry["at_least"] == pytest.approx((20 + 20 + 19) / 3)
    assert (entry["censored"], entry["n"], entry["budget"]) == (2, 3, 20)
    assert censored_text(entry) == ">= 19.7 (2/3 seeds >= 20)"
    whole = censored_summary([1.0, 3.0], budget=20)
    assert whole["mean"] == whole["at_least"] == 2.0 and whole["censored"] == 0
    assert censored_text(whole) == "2.0"
    assert censored_text(censored_summary([None], budget=5)) == ">= 5.0 (1/1 seeds >= 5)"


def test_relearn_runs_with_batchnorm_in_eval_mode(digits, monkeypatch):
    """One stated mode for every model: BatchNorm statistics fixed while relearning."""
    import unlearnkit.metrics.relearn as relearn

    seen = []

    def spy(model, data, cfg, trainable, **kwargs):
        seen.append(kwargs.get("eval_mode"))
        return train(model, data, cfg, trainable, **kwargs)

    monkeypatch.setattr(relearn, "train", spy)
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8)
    forget = digits.train.subset(torch.arange(40))
    relearn_epochs(model, forget, select_trainable(model, "bn"), threshold=100.0, max_epochs=2)
    assert seen == [True, True] and relearn.RELEARN_BN == "frozen"
