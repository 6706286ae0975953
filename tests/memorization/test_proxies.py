"""Proxies: each one computed from the training events it saw, checked by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.memorization.proxies import PROXIES, run_with_proxies
from unlearnkit.models import create_model
from unlearnkit.training import Callback, TrainConfig, TrainState, predict_logits, train

EVENTS = ["confidence", "max_confidence", "neg_entropy", "binary_accuracy"]


def test_registry_lists_the_six_proxies() -> None:
    assert PROXIES.names() == [
        "binary_accuracy",
        "confidence",
        "curvature",
        "holdout",
        "max_confidence",
        "neg_entropy",
    ]
    with pytest.raises(UnlearnkitError, match="unknown memorization proxy 'loss'"):
        PROXIES.get("loss")


def test_learning_events_by_hand() -> None:
    data = ArraySplit(torch.zeros(2, 1, 1, 1), torch.tensor([0, 1]), torch.tensor([5, 7]))
    proxies = {n: PROXIES.create(n) for n in EVENTS}
    state = TrainState(model=nn.Identity(), epoch=0, step=0)
    for p in proxies.values():
        p.bind(data)
    # id 5 seen twice (logits favour class 0, then class 1), id 7 once (favours class 1)
    for ids, logits in (
        (torch.tensor([5, 7]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])),
        (torch.tensor([5]), torch.tensor([[0.0, 3.0]])),
    ):
        labels = torch.tensor([0 if i == 5 else 1 for i in ids.tolist()])
        state.batch = (torch.zeros(len(ids), 1, 1, 1), labels, ids)
        state.logits = logits
        for p in proxies.values():
            p.on_batch_end(state)
    got = {n: p.result(nn.Identity(), [], TrainConfig()) for n, p in proxies.items()}
    s = torch.sigmoid  # two classes: p(class 0 | [a, b]) = sigmoid(a - b)
    conf5 = (s(torch.tensor(2.0)) + s(torch.tensor(-3.0))) / 2
    assert got["confidence"][0].item() == pytest.approx(conf5.item())
    assert got["confidence"][1].item() == pytest.approx(s(torch.tensor(1.0)).item())
    assert got["max_confidence"][0].item() == pytest.approx(
        (s(torch.tensor(2.0)) + s(torch.tensor(3.0))).item() / 2
    )
    assert got["binary_accuracy"].tolist() == [0.5, 1.0]
    p = torch.tensor([s(torch.tensor(1.0)), s(torch.tensor(-1.0))])
    assert got["neg_entropy"][1].item() == pytest.approx(float((p * p.log()).sum()))


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_batch_end(self, state: TrainState) -> None:
        self.events.append(
            (state.batch[2].clone(), state.batch[1].clone(), state.logits.detach().clone())
        )


def test_proxies_match_the_recorded_training_events(digits) -> None:
    data = digits.train.subset(torch.arange(120))
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=32, seed=0)
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8, width=8)
    recorder = Recorder()
    created = [PROXIES.create(n) for n in EVENTS]
    for p in created:
        p.bind(data)
    train(model, data, cfg, callbacks=[*created, recorder])
    assert len(recorder.events) == 3 * 4
    total = torch.zeros(len(data), dtype=torch.float64)
    count = torch.zeros(len(data), dtype=torch.float64)
    for ids, y, logits in recorder.events:
        prob = F.softmax(logits.double(), 1)
        total[ids] += prob[torch.arange(len(y)), y]  # ids are positions here (0..119)
        count[ids] += 1
    assert count.eq(3).all()  # every sample seen once per epoch
    conf = created[0].result(model, [], cfg)
    assert torch.allclose(conf, total / count)


def test_curvature_estimates_the_input_hessian_trace() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(3, 1, 2, 2), torch.tensor([0, 1, 2])
    data = ArraySplit(x, y, torch.arange(3))
    proxy = PROXIES.create("curvature", h=1e-3, draws=400)
    proxy.bind(data)
    proxy.on_epoch_end(TrainState(model=model, epoch=0, step=0))
    got = proxy.result(model, [], TrainConfig())
    w = model[1].weight.detach().double()
    for i in range(3):  # Hessian of CE wrt x for linear logits: W^T (diag(p) - p p^T) W
        p = F.softmax(model(x[i : i + 1]).detach().double(), 1)[0]
        h = w.T @ (torch.diag(p) - torch.outer(p, p)) @ w
        exact = float((h * h).sum())  # E ||H v||^2 = ||H||_F^2 for Rademacher v
        assert got[i].item() == pytest.approx(exact, rel=0.2)


def test_holdout_is_symmetric_kl_and_needs_held_out_data(digits) -> None:
    data, holdout = digits.train.subset(torch.arange(60)), digits.test.subset(torch.arange(60))
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8, width=8)
    run = run_with_proxies(
        model,
        data,
        TrainConfig(epochs=2, lr=0.05, seed=0),
        [n for n, _ in model.named_parameters()],
        ["holdout"],
        holdout,
    )
    # the same fine-tune on the held-out data, done here, and the symmetric KL from its definition
    tuned = copy.deepcopy(run.model)
    recipe = TrainConfig(epochs=3, lr=0.05, seed=0, schedule="constant", progress=False)
    train(tuned, holdout, recipe, [n for n, _ in tuned.named_parameters()])
    p = torch.softmax(predict_logits(run.model, data.x).double(), dim=1)
    q = torch.softmax(predict_logits(tuned, data.x).double(), dim=1)
    kl_pq = (p * (p.log() - q.log())).sum(1)
    kl_qp = (q * (q.log() - p.log())).sum(1)
    assert torch.allclose(run.values["holdout"], kl_pq + kl_qp, rtol=1e-6, atol=1e-9)
    assert float(run.values["holdout"].max()) > 1e-4  # the fine-tune really moved predictions
    with pytest.raises(UnlearnkitError, match="needs held-out data"):
        run_with_proxies(
            model,
            data,
            TrainConfig(epochs=1, seed=0),
            [n for n, _ in model.named_parameters()],
            ["holdout"],
            None,
        )


def test_bad_proxy_options_are_refused() -> None:
    with pytest.raises(UnlearnkitError, match="curvature needs h > 0"):
        PROXIES.create("curvature", h=0.0)
