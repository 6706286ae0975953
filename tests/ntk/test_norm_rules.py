"""Fast-NTK's batched rules for every normalisation kind of ``--peft norm``, on real timm models.

Each case builds a small real architecture at 32 px, perturbs every norm layer (running
statistics and affine values) so the rule is really exercised, and checks the batched Jacobian
(one forward, C reverse passes through the activations) against ``vmap(jacrev)`` per sample.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import timm
import torch
import torchvision
from ntk_helpers import perturbed_norms, rel
from timm.layers import GroupNorm, GroupNormAct
from torch import nn

from unlearnkit.models import select_trainable
from unlearnkit.ntk.jacobian import batched_jacobian, reference_jacobian
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.ntk.rules import NormTap, jacobian_plan

CLASSES = 5


def _timm(name: str, **kwargs: object) -> nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=CLASSES, **kwargs)


def _torchvision(name: str, head: str) -> nn.Module:
    model = torchvision.models.get_model(name, weights=None, num_classes=CLASSES)
    model.get_classifier = lambda: model.get_submodule(head)  # until the shared head finder
    return model


CASES = {  # case -> (builder, the norm layer kinds its rules must cover)
    "resnet18-BatchNorm2d": (lambda: _timm("resnet18"), {"BatchNorm2d"}),
    "efficientnet_b0-BatchNormAct2d": (lambda: _timm("efficientnet_b0"), {"BatchNormAct2d"}),
    "convnext_atto-LayerNorm2d": (lambda: _timm("convnext_atto"), {"LayerNorm2d"}),
    "convnext_atto-channels_last-LayerNorm": (
        lambda: _timm("convnext_atto", conv_mlp=False),
        {"LayerNorm", "LayerNorm2d"},
    ),
    "vit_tiny-LayerNorm": (lambda: _timm("vit_tiny_patch16_224", img_size=32), {"LayerNorm"}),
    "torchvision-resnet18-BatchNorm2d": (lambda: _torchvision("resnet18", "fc"), {"BatchNorm2d"}),
    "torchvision-mobilenet_v3_small-BatchNorm2d": (
        lambda: _torchvision("mobilenet_v3_small", "classifier.3"),
        {"BatchNorm2d"},
    ),
    "resnet18-nn.GroupNorm": (
        lambda: _timm("resnet18", norm_layer=lambda c, **_: nn.GroupNorm(8, c)),
        {"GroupNorm"},
    ),
    "resnet18-timm.GroupNorm": (
        lambda: _timm("resnet18", norm_layer=partial(GroupNorm, num_groups=8)),
        {"GroupNorm"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_norm_mode_takes_a_batched_rule_for_every_parameter(case):
    build, kinds = CASES[case]
    torch.manual_seed(0)
    model = perturbed_norms(build())
    space = ParamSpace.from_model(model, select_trainable(model, "norm"))
    plan = jacobian_plan(model, space)
    assert plan.generic == [] and plan.head is not None  # no per-sample fallback at all
    assert {type(t.module).__name__ for t in plan.taps if isinstance(t, NormTap)} == kinds
    x = torch.randn(2, 3, 32, 32)
    fast, f_fast = batched_jacobian(model, space, x)
    ref, f_ref = reference_jacobian(model, space, x)
    pseudo, _ = batched_jacobian(model, space, x, kernel="pntk")
    err, perr = rel(fast, ref), rel(pseudo, ref.sum(1) / math.sqrt(CLASSES))
    print(f"\n{case}: P={space.numel}, max rel diff exact {err:.1e}, pntk {perr:.1e}")
    assert fast.shape == ref.shape == (2, CLASSES, space.numel)
    assert err < 1e-5 and perr < 1e-5
    assert torch.allclose(f_fast, f_ref, rtol=1e-5, atol=1e-5)


def test_act_variant_and_trailing_rules_against_the_reference():
    """timm's GroupNormAct (the affine output is taken at ``drop``'s input, before the
    activation) on a pre-activation ResNetV2; its 1x1-conv head has no rule and goes through
    the reference path, which the plan says."""
    torch.manual_seed(1)
    model = perturbed_norms(_timm("resnetv2_18", norm_layer=partial(GroupNormAct, num_groups=8)))
    space = ParamSpace.from_model(model, select_trainable(model, "norm"))
    plan = jacobian_plan(model, space)
    assert plan.generic == ["head.fc.weight", "head.fc.bias"]
    assert {type(t.module).__name__ for t in plan.taps} == {"GroupNormAct"}
    x = torch.randn(2, 3, 32, 32)
    assert rel(batched_jacobian(model, space, x)[0], reference_jacobian(model, space, x)[0]) < 1e-5


class OverriddenNorm(nn.LayerNorm):
    """A subclass with its own forward may compute anything: no rule may be assumed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_a_norm_subclass_with_its_own_forward_takes_the_reference_path():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), OverriddenNorm(6), nn.Linear(6, 3))
    model.get_classifier = lambda: model[3]  # type: ignore[method-assign]
    space = ParamSpace.from_model(model, select_trainable(model, "norm"))
    plan = jacobian_plan(model, space)
    assert plan.generic == ["2.weight", "2.bias"] and plan.taps == []
    x = torch.randn(4, 3, 2, 2)
    assert rel(batched_jacobian(model, space, x)[0], reference_jacobian(model, space, x)[0]) < 1e-6


def test_linearised_mobilenet_v3_can_be_trained() -> None:
    """Relearning trains the linearised model: a backward through its forward-mode derivative.
    torch has no derivative of hardsigmoid_backward; the linearised copy uses equal clamp-based
    activations, so MobileNetV3 trains and its outputs stay those of the network."""
    import torchvision

    from unlearnkit.models import select_trainable
    from unlearnkit.ntk.jacobian import twice_differentiable
    from unlearnkit.ntk.linearized import LinearizedModel

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=3).eval()
    names = [n for n in select_trainable(net, "norm") if "bias" in n][:4]
    x = torch.randn(2, 3, 32, 32)
    copy_ = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=3).eval()
    copy_.load_state_dict(net.state_dict())
    assert twice_differentiable(copy_) > 0
    torch.testing.assert_close(copy_(x), net(x), atol=1e-6, rtol=1e-5)
    lin = LinearizedModel(net, names, net.state_dict())
    lin.train()
    loss = lin(x).logsumexp(1).sum()
    loss.backward()  # raised "derivative for aten::hardsigmoid_backward is not implemented"
    grads = [p.grad for n, p in lin._net.named_parameters() if n in names]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
