import copy

import pytest
import torch

from unlearnkit.config import build_config
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import METHODS, UnlearningContext, create_method, default_method_names
from unlearnkit.models import create_model, select_trainable
from unlearnkit.training import TrainConfig, accuracy, train

BASELINES = [
    "retrain",
    "finetune",
    "neggrad",
    "neggrad_plus",
    "random_label",
    "l1_sparse",
    "salun",
    "scrub",
]
FAST = {"epochs": 1}


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8)
    names = select_trainable(model, "bn")
    initial = copy.deepcopy(model.state_dict())
    cfg = TrainConfig(epochs=8, lr=0.05, seed=0)
    train(model, digits.train, cfg, names)
    return model, initial, names, cfg


def make_ctx(digits, trained, spec="class:3"):
    model, initial, names, cfg = trained
    ids = select_forget(digits.train, spec)
    return UnlearningContext(
        model=copy.deepcopy(model),
        initial_state=initial,
        retain=digits.train.drop_ids(ids),
        forget=digits.train.select_ids(ids),
        test=digits.test,
        num_classes=10,
        trainable=names,
        train_config=cfg,
        peft="bn",
        seed=0,
    )


def test_all_baselines_registered():
    assert set(BASELINES) <= set(METHODS.names())


@pytest.mark.parametrize("name", BASELINES)
def test_method_moves_only_trainable_parameters(digits, trained, name):
    ctx = make_ctx(digits, trained)
    before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    params = {} if name == "retrain" else FAST
    out = create_method(name, **params).unlearn(ctx)
    changed = {n for n, p in out.named_parameters() if not torch.equal(p, before[n])}
    assert changed, f"{name} changed nothing"
    assert changed <= set(ctx.trainable)


def test_retrain_is_training_on_retain_from_the_start(digits, trained):
    ctx = make_ctx(digits, trained)
    out = create_method("retrain").unlearn(ctx)
    again = create_method("retrain").unlearn(make_ctx(digits, trained))
    assert all(
        torch.equal(a, b)
        for a, b in zip(out.state_dict().values(), again.state_dict().values(), strict=True)
    )
    assert accuracy(out, ctx.forget) == 0.0  # class 3 was never seen by the new head
    assert accuracy(out, ctx.retain) > 70


def test_neggrad_lowers_forget_accuracy(digits, trained):
    ctx = make_ctx(digits, trained)
    before = accuracy(ctx.model, ctx.forget)
    out = create_method("neggrad", epochs=3, lr=0.05).unlearn(ctx)
    assert accuracy(out, ctx.forget) < before - 20


def test_salun_changes_only_salient_entries(digits, trained):
    ctx = make_ctx(digits, trained)
    before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    out = create_method("salun", epochs=1, saliency_fraction=0.2).unlearn(ctx)
    changed = sum(int((p != before[n]).sum()) for n, p in out.named_parameters())
    total = sum(before[n].numel() for n in ctx.trainable)
    assert 0 < changed <= round(0.2 * total) + 1


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("finetune", {"lr": -1}, "lr"),
        ("neggrad_plus", {"alpha": 2}, "alpha"),
        ("salun", {"saliency_fraction": 0}, "saliency_fraction"),
        ("scrub", {"bogus": 1}, "bogus"),
    ],
)
def test_bad_hyper_parameters_name_the_field(name, params, field):
    with pytest.raises(UnlearnkitError, match=field):
        create_method(name, **params)


def test_default_run_skips_only_methods_marked_costly():
    names = default_method_names()
    assert "ntk" not in names  # full-model NTK: minutes and GBs, run by name only
    assert set(BASELINES) | {"fast_ntk", "rum"} <= set(names)
    assert build_config().methods == ["retrain", *[n for n in names if n != "retrain"]]
    assert build_config(methods=["ntk"]).methods == ["retrain", "ntk"]
