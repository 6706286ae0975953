"""RUM: refine by memorization, then the configured method on each subset, low -> high."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearnkit.config import build_config
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.memorization import ScoreTable, save_scores
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.methods import rum as rum_module
from unlearnkit.models import create_model
from unlearnkit.training import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small models: a second thread only adds contention


@pytest.fixture()
def ctx(digits) -> UnlearningContext:
    train = digits.train.subset(torch.arange(90))
    forget_ids = torch.arange(0, 90, 10)  # 9 samples: 3 per subset
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8, width=8)
    return UnlearningContext(
        model=model,
        initial_state=copy.deepcopy(model.state_dict()),
        retain=train.drop_ids(forget_ids),
        forget=train.select_ids(forget_ids),
        test=digits.test.subset(torch.arange(40)),
        num_classes=10,
        trainable=[n for n, _ in model.named_parameters()],
        train_config=TrainConfig(epochs=1, lr=0.05, seed=0),
        seed=0,
    )


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
    method = create_method(
        "rum",
        scores="proxy:confidence",
        low={"method": "none"},
        medium={"method": "finetune", "params": {"epochs": 1}},
        high={"method": "neggrad_plus", "params": {"epochs": 1}},
    )
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    out = method.unlearn(ctx)
    assert sum(len(v) for v in method.subsets.values()) == len(ctx.forget)
    assert any(not torch.equal(before[k], v) for k, v in out.state_dict().items())


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
    assert set(results["summary"]) == {"original", "retrain", "rum"}
    assert 0 <= results["summary"]["rum"]["tow_mean"] <= 1
    assert results["summary"]["rum"]["params_touched_mean"] > 0
