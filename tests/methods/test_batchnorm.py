"""The BatchNorm policy during unlearning (frozen / updated / recompute), recorded and applied
the same way by every method, retrain exempt, and paper-mode Fast-NTK no longer keeping the
statistics it computed on D (D_f included)."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from unlearnkit.config import ExperimentConfig, build_config
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import create_method
from unlearnkit.methods.batchnorm import batchnorm_layers, recompute_bn_statistics
from unlearnkit.models import create_model, select_trainable
from unlearnkit.recipe import TrainedModel
from unlearnkit.training import TrainConfig, train


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: b.detach().clone()
        for n, b in model.named_buffers()
        if n.endswith(("running_mean", "running_var"))
    }


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> bool:
    return all(torch.allclose(a[k], b[k], atol=atol) for k in a)


@pytest.fixture(scope="module")
def small(digits):
    """400 samples of D and 200 of test: enough classes for class 3 to matter, fast."""
    return dataclasses.replace(
        digits,
        train=digits.train.subset(torch.arange(400)),
        test=digits.test.subset(torch.arange(200)),
    )


@pytest.fixture(scope="module")
def trained(small):
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8)
    names = select_trainable(model, "bn")
    initial = copy.deepcopy(model.state_dict())
    cfg = ExperimentConfig(pretrain=False, peft="bn", train=TrainConfig(epochs=4, lr=0.05))
    train(model, small.train, cfg.train, names)
    return cfg, TrainedModel(model, initial, names, 0)


def context(small, trained, make_context, mode: str):
    cfg, original = trained
    return make_context(cfg.model_copy(update={"bn_mode": mode}), small, original, "class:3")


def test_recompute_gives_the_statistics_of_the_data_alone():
    torch.manual_seed(0)
    x = torch.randn(512, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] + 5
    data = ArraySplit(x, torch.zeros(512, dtype=torch.long), torch.arange(512))
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Flatten()).eval()
    model[0].running_mean.fill_(-7.0)  # whatever it held before must not matter
    model[0].momentum = 0.3
    assert recompute_bn_statistics(model, data, batch_size=128) == 1
    assert torch.allclose(model[0].running_mean, x.mean((0, 2, 3)), atol=1e-4)
    # the average of 4 equal batches' unbiased variances, close to the variance of all of x
    assert torch.allclose(model[0].running_var, x.var((0, 2, 3)), rtol=0.02)
    assert model[0].momentum == 0.3 and not model.training  # settings given back
    assert recompute_bn_statistics(nn.Linear(2, 2), data) == 0  # nothing to do


def test_recompute_handles_a_trailing_single_sample():
    data = ArraySplit(torch.randn(5, 2, 1, 1), torch.zeros(5, dtype=torch.long), torch.arange(5))
    model = nn.BatchNorm2d(2)
    recompute_bn_statistics(model, data, batch_size=4)  # 4 + 1: the 1 joins its neighbour
    assert torch.allclose(model.running_mean, data.x.mean((0, 2, 3)), atol=1e-5)


@pytest.mark.parametrize("name", ["finetune", "neggrad", "scrub"])
def test_policies_do_what_they_say(small, trained, make_context, name):
    _, original = trained
    before = bn_buffers(original.model)
    params = {"epochs": 1, "max_steps": 1} if name == "scrub" else {"epochs": 1}
    out = {}
    for mode in ("frozen", "updated", "recompute"):
        ctx = context(small, trained, make_context, mode)
        out[mode] = bn_buffers(create_method(name, **params).run(ctx))
    assert same(out["frozen"], before, atol=0)  # eval-mode BN: the original's statistics
    assert not same(out["updated"], before)  # train mode: the method's batches moved them
    # recompute: the statistics of D_r under the unlearned weights, nothing else
    ctx = context(small, trained, make_context, "recompute")
    model = create_method(name, **params).unlearn(ctx)
    recompute_bn_statistics(model, ctx.retain)
    assert same(out["recompute"], bn_buffers(model))
    assert not same(out["recompute"], out["updated"])


def test_retrain_is_exempt(small, trained, make_context):
    got = {}
    for mode in ("frozen", "recompute"):
        ctx = context(small, trained, make_context, mode)
        ctx.train_config = ctx.train_config.model_copy(update={"epochs": 1})
        got[mode] = bn_buffers(create_method("retrain").run(ctx))
    assert same(got["frozen"], got["recompute"], atol=0)  # the recipe, whatever the policy


def test_paper_mode_fast_ntk_forgets_the_statistics_of_d(small, trained, make_context):
    """Item 11: the original's statistics were computed on D (D_f included); paper mode now
    recomputes them on D_r unless the policy is frozen. The linearized model keeps w0's."""
    _, original = trained
    on_d = bn_buffers(original.model)
    ctx = context(small, trained, make_context, "recompute")
    paper = create_method("fast_ntk", mode="paper").run(ctx)
    expected = copy.deepcopy(paper)
    recompute_bn_statistics(expected, ctx.retain)
    assert same(bn_buffers(paper), bn_buffers(expected))
    assert not same(bn_buffers(paper), on_d)  # class 3 is gone from the statistics
    frozen = create_method("fast_ntk", mode="paper").run(
        context(small, trained, make_context, "frozen")
    )
    assert same(bn_buffers(frozen), on_d, atol=0)
    linear = create_method("fast_ntk").run(context(small, trained, make_context, "recompute"))
    w0 = {k: v for k, v in original.initial_state.items() if k in on_d}
    assert same({k: v for k, v in bn_buffers(linear).items() if k in w0}, w0, atol=0)


def test_policy_is_a_validated_recorded_config_field():
    cfg = build_config(bn_mode="frozen")
    assert cfg.model_dump()["bn_mode"] == "frozen"
    with pytest.raises(UnlearnkitError, match="bn_mode"):
        build_config(bn_mode="sometimes")


def test_smallcnn_has_batchnorm_to_govern():
    assert batchnorm_layers(create_model("smallcnn", 10, 1, 8))
