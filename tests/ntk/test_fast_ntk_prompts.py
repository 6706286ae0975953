"""Visual prompts (VPT) on the timm ViT and the ``prompts`` trainable mode."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import count_parameters, create_model, select_trainable
from unlearnkit.models.prompts import add_visual_prompts
from unlearnkit.ntk import ParamSpace, per_sample_jacobian
from unlearnkit.training import TrainConfig, train


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("deep", [False, True])
def test_prompts_train_and_backbone_stays_bit_identical(deep):
    torch.manual_seed(0)
    model = create_model("vit_tiny_vpt", 4, 1, 8, depth=2, deep=deep, num_prompts=3)
    names = select_trainable(model, "prompts")
    assert names == ["prompts", "vit.head.weight", "vit.head.bias"]
    assert model.prompts.shape == (2 if deep else 1, 3, 192)
    trainable, total = count_parameters(model, names)
    assert trainable / total < 0.05
    before = copy.deepcopy(model.state_dict())
    data = ArraySplit(torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,)), torch.arange(16))
    train(model, data, TrainConfig(epochs=2, lr=0.1, batch_size=8), names)
    after = model.state_dict()
    for key, value in after.items():
        if key in names:
            assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key


def test_prompt_jacobian_matches_finite_differences():
    """J v against (f(p + h v) - f(p - h v)) / 2h, in float64 so h can be small."""
    torch.manual_seed(0)
    vit = create_model("vit_tiny", 3, 1, 8, depth=2)
    model = add_visual_prompts(vit, num_prompts=2).eval().double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    space = ParamSpace.from_model(model, ["prompts"])
    jac, f0 = per_sample_jacobian(model, space, x)
    assert jac.shape == (2, 3, 2 * 192)
    v = torch.randn(space.numel, dtype=torch.float64)  # (a constant shift is LN-invariant)
    h = 1e-6
    start = model.prompts.detach().clone()
    with torch.no_grad():
        torch.testing.assert_close(f0, model(x))
        model.prompts.copy_(start + h * v.view_as(start))
        up = model(x)
        model.prompts.copy_(start - h * v.view_as(start))
        down = model(x)
    numeric = (up - down) / (2 * h)
    assert float(numeric.norm()) > 1e-3  # the prompts do reach the logits
    torch.testing.assert_close(jac @ v, numeric, rtol=1e-5, atol=1e-7)


def test_prompts_mode_needs_prompts_and_bn_needs_batchnorm():
    with pytest.raises(UnlearnkitError, match="prompts"):
        select_trainable(create_model("smallcnn", 10, 1, 8), "prompts")
    with pytest.raises(UnlearnkitError, match="BatchNorm"):
        select_trainable(create_model("vit_tiny_vpt", 10, 1, 8, depth=1), "bn")
    with pytest.raises(UnlearnkitError, match="num_prompts"):
        add_visual_prompts(create_model("vit_tiny", 10, 1, 8, depth=1), num_prompts=0)


def test_linearized_vit_runs_forward_mode_through_attention():
    from unlearnkit.ntk import LinearizedModel

    torch.manual_seed(0)
    model = create_model("vit_tiny_vpt", 3, 1, 8, depth=1, num_prompts=2).eval()
    names = select_trainable(model, "prompts")
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 8, 8)
    lin = LinearizedModel(model, names, w0)  # jvp: the fused attention kernel has no forward AD
    space = ParamSpace.from_model(model, names)
    jac, f0 = per_sample_jacobian(model, space, x)
    step = 0.1 * torch.randn(space.numel)
    with torch.no_grad():
        assert torch.allclose(lin(x), model(x), atol=1e-5)  # w = w0: f = f0
        lin.set_displacement(step)
        moved = lin(x)
    assert float((jac @ step).norm()) > 0.1  # the step does move the linear model
    torch.testing.assert_close(moved, f0 + jac @ step, rtol=1e-4, atol=1e-4)  # f0 + J (w - w0)
    attn = model.vit.blocks[0].attn
    fused = attn.fused_attn
    per_sample_jacobian(model, ParamSpace.from_model(model, names), x)
    assert attn.fused_attn == fused  # the Jacobian pass restores the model's attention path
