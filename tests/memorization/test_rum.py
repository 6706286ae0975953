"""RUM: refine by memorization, then the configured method on each subset, low -> high."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.config import ExperimentConfig, build_config
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.memorization import ScoreTable, save_scores
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.methods import rum as rum_module
from unlearnkit.metrics import tow
from unlearnkit.recipe import train_original
from unlearnkit.training import TrainConfig, accuracy


@pytest.fixture(scope="module")
def small(digits):
    """(recipe, bundle, original): 90 training digits, smallcnn width 8 trained on all of them
    (30 epochs: it knows every training sample), 40 test digits."""
    cfg = ExperimentConfig(
        pretrain=False,
        peft="full",
        model_options={"width": 8},
        train=TrainConfig(epochs=30, lr=0.05, batch_size=32, seed=0),
    )
    bundle = dataclasses.replace(
        digits,
        train=digits.train.subset(torch.arange(90)),
        test=digits.test.subset(torch.arange(40)),
        public=None,
    )
    torch.set_num_threads(1)
    return cfg, bundle, train_original(cfg, bundle, 0)


@pytest.fixture()
def ctx(small, make_context) -> UnlearningContext:
    cfg, bundle, original = small
    return make_context(cfg, bundle, original, torch.arange(0, 90, 10))  # 9 samples: 3 a subset


def forget_loss(model, split) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(split.x), split.y))


def score_file(ctx: UnlearningContext, path, direction: int = 1):
    data = rum_module.full_training_set(ctx)
    score = ((data.ids * 37) % 90).double()  # a fixed shuffle of the ids
    table = ScoreTable(
        data.ids,
        score,
        torch.full_like(score, float("nan")),
        {"direction": direction, "train_fingerprint": data.fingerprint()},
    )
    return save_scores(table, path), dict(zip(data.ids.tolist(), score.tolist(), strict=True))


class Spy:
    """Stands in for create_method: records (method, params, forget ids, retain ids, model)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, name: str, **params):
        spy = self

        class Fake:
            def unlearn(self, ctx: UnlearningContext):
                spy.calls.append(
                    {
                        "method": name,
                        "params": params,
                        "forget": sorted(ctx.forget.ids.tolist()),
                        "retain": sorted(ctx.retain.ids.tolist()),
                        "model": ctx.model,
                    }
                )
                return copy.deepcopy(ctx.model)

        return Fake()


def test_rum_runs_each_subset_in_order_with_the_retain_set(ctx, tmp_path, monkeypatch) -> None:
    path, score = score_file(ctx, tmp_path / "s.csv")
    method = create_method(
        "rum",
        scores=f"file:{path}",
        low={"method": "neggrad_plus", "params": {"alpha": 0.99}},
        medium={"method": "finetune", "params": {"epochs": 2}},
        high={"method": "salun"},
    )
    spy = Spy()
    monkeypatch.setattr(rum_module, "create_method", spy)
    out = method.unlearn(ctx)
    ranked = sorted(ctx.forget.ids.tolist(), key=lambda i: score[i])
    assert [c["method"] for c in spy.calls] == ["neggrad_plus", "finetune", "salun"]
    assert [c["forget"] for c in spy.calls] == [
        sorted(ranked[:3]),
        sorted(ranked[3:6]),
        sorted(ranked[6:]),
    ]
    assert spy.calls[0]["params"] == {"alpha": 0.99} and spy.calls[1]["params"] == {"epochs": 2}
    for call in spy.calls:  # never a pending (or finished) forget subset in the retain set
        assert call["retain"] == sorted(ctx.retain.ids.tolist())
    assert spy.calls[0]["model"] is ctx.model  # each step starts where the previous ended
    assert spy.calls[1]["model"] is not ctx.model and out is not spy.calls[2]["model"]


def test_none_skips_a_subset_and_thresholds_split(ctx, tmp_path, monkeypatch) -> None:
    path, score = score_file(ctx, tmp_path / "s.csv")
    method = create_method(
        "rum",
        scores=f"file:{path}",
        split="thresholds",
        thresholds=(30.0, 60.0),
        low={"method": "none"},
        medium={"method": "finetune"},
        high={"method": "salun"},
    )
    spy = Spy()
    monkeypatch.setattr(rum_module, "create_method", spy)
    method.unlearn(ctx)
    ids = ctx.forget.ids.tolist()
    assert [c["method"] for c in spy.calls] == ["finetune", "salun"]
    assert spy.calls[0]["forget"] == sorted(i for i in ids if 30 <= score[i] < 60)
    assert spy.calls[1]["forget"] == sorted(i for i in ids if score[i] >= 60)


def test_rum_with_a_proxy_really_unlearns(ctx) -> None:
    """Measured: the original gets all 9 forget samples right; after RUM the high subset (gradient
    ascent) is at 0% with its loss up from 0.2 to 4.3, the forget set at 44%."""
    method = create_method(
        "rum",
        scores="proxy:confidence",
        low={"method": "none"},
        medium={"method": "finetune", "params": {"epochs": 2}},
        high={"method": "neggrad", "params": {"epochs": 2, "lr": 0.05}},
    )
    original = copy.deepcopy(ctx.model)
    assert accuracy(original, ctx.forget) == 100.0  # there is something to forget
    out = method.unlearn(ctx)
    parts = method.subsets
    assert sorted(torch.cat(list(parts.values())).tolist()) == sorted(ctx.forget.ids.tolist())
    high = ctx.forget.select_ids(parts["high"])
    assert accuracy(out, high) <= 34  # at most 1 of its 3 samples still right
    assert forget_loss(out, high) > 5 * forget_loss(original, high)
    assert accuracy(out, ctx.forget) <= 67
    # the proxy ranks by confidence: the high subset is the one the original was least sure of
    low = ctx.forget.select_ids(parts["low"])
    assert forget_loss(original, high) > forget_loss(original, low)


def test_score_file_for_other_data_is_refused(ctx, tmp_path) -> None:
    path, _ = score_file(ctx, tmp_path / "s.csv")
    other = copy.copy(ctx)
    other.retain = ArraySplit(ctx.retain.x + 1, ctx.retain.y, ctx.retain.ids)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    with pytest.raises(ConflictError, match="computed for other data"):
        create_method("rum", scores=f"file:{path}").unlearn(other)
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"high": {"method": "magic"}}, "unknown method 'magic'"),
        ({"high": {"method": "rum"}}, "cannot nest"),
        ({"medium": {"method": "finetune", "params": {"lr": -1}}}, "lr"),
        ({"scores": "proxy:loss"}, "unknown proxy 'loss'"),
        ({"scores": "fz"}, "proxy:NAME or file:PATH"),
        ({"split": "thresholds"}, "needs thresholds"),
        ({"huge": {"method": "salun"}}, "huge"),
    ],
)
def test_bad_params_are_refused(params, message) -> None:
    with pytest.raises(UnlearnkitError, match=message):
        create_method("rum", **params)


def test_yaml_variants(tmp_path) -> None:
    with pytest.raises(UnlearnkitError, match=r"score file .*missing\.csv not found"):
        create_method("rum", config="configs/rum.yaml", scores=f"file:{tmp_path}/missing.csv")
    paper = create_method("rum", config="configs/rum.yaml", scores="proxy:confidence")
    assert (paper.params.low.method, paper.params.medium.method, paper.params.high.method) == (
        "none",
        "finetune",
        "salun",
    )
    proxy = create_method("rum", config="configs/rum.yaml", variant="proxy")
    assert {proxy.params.low.method, proxy.params.high.method} == {"neggrad_plus"}
    assert proxy.params.medium.params["alpha"] == 0.97
    bad = tmp_path / "rum.yaml"
    bad.write_text("variants:\n  v: {low: {method: none}, high: {method: salun}}\n")
    with pytest.raises(UnlearnkitError, match="names no 'medium' subset"):
        create_method("rum", config=str(bad), variant="v")
    bad.write_text(
        "variants:\n  v: {low: {method: none}, medium: {method: sgd}, high: {method: salun}}\n"
    )
    with pytest.raises(UnlearnkitError, match="unknown method 'sgd'"):
        create_method("rum", config=str(bad), variant="v")
    with pytest.raises(UnlearnkitError, match="no variant 'nope'"):
        create_method("rum", config="configs/rum.yaml", variant="nope")


def test_rum_inside_an_experiment(digits) -> None:
    from unlearnkit.experiment import run_experiment

    cfg = build_config(
        pretrain=False,
        peft="full",
        methods=["rum"],
        method_params={
            "rum": {
                "medium": {"method": "finetune", "params": {"epochs": 1}},
                "high": {"method": "neggrad_plus", "params": {"epochs": 1}},
            }
        },
        forget="random:30",
        train={"epochs": 2, "lr": 0.05},
        relearn_max_epochs=2,
        model_options={"width": 8},
    )
    results = run_experiment(cfg)
    summary = results["summary"]
    assert set(summary) == {"original", "retrain", "rum"}
    rows = {r["method"]: r for r in results["runs"]}
    assert summary["rum"]["tow_mean"] == pytest.approx(
        tow(rows["rum"]["acc"], rows["retrain"]["acc"])
    )
    # the model RUM returns is the one its steps trained: every entry moved (full, weight decay)
    assert summary["rum"]["params_touched_mean"] == results["trainable_params"]
