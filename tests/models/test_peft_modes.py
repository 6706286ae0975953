"""Trainable modes on real timm / torchvision architectures: what ``norm`` selects, where it is
refused, and the NTK state it implies refused before any work when it cannot fit."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from timm.layers import BatchNormAct2d, LayerNorm2d
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import count_parameters, head_parameter_names, select_trainable
from unlearnkit.ntk import MemoryBudgetError, ParamSpace, precompute_state_file
from unlearnkit.ntk.precompute import cache_dir_for

GIB = 2**30


def _norm_modules(model: nn.Module, types: tuple[type, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, types)]


def _affine_count(modules: list[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters(recurse=False))


def _head_count(model: nn.Module) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in head_parameter_names(model))


NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
TIMM = {  # name -> the norm kind the architecture is made of
    "resnet18": nn.BatchNorm2d,
    "efficientnet_b0": BatchNormAct2d,
    "convnext_atto": LayerNorm2d,
    "vit_tiny_patch16_224": nn.LayerNorm,
}


@pytest.mark.parametrize("name", list(TIMM))
def test_norm_mode_selects_every_norm_layer_and_the_head(name):
    kwargs = {"img_size": 32} if name.startswith("vit") else {}
    with torch.device("meta"):  # which parameters a mode picks needs no memory
        model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    names = select_trainable(model, "norm")
    norms = _norm_modules(model, NORMS)
    assert norms and all(isinstance(m, TIMM[name]) for m in norms)
    trainable, _ = count_parameters(model, names)
    assert trainable == _affine_count(norms) + _head_count(model)
    assert all(p.requires_grad == (n in names) for n, p in model.named_parameters())
    if TIMM[name] in (nn.BatchNorm2d, BatchNormAct2d):  # bn and norm agree on a BN-only CNN
        assert select_trainable(model, "bn") == names
    else:  # bn keeps meaning BatchNorm only
        with pytest.raises(UnlearnkitError, match="'norm' for LayerNorm"):
            select_trainable(model, "bn")


def test_bn_mode_is_unchanged_on_a_torchvision_mobilenet():
    model = torchvision.models.get_model("mobilenet_v3_small", num_classes=10)
    model.get_classifier = lambda: model.classifier[3]  # the `models` head finder replaces this
    bn = select_trainable(model, "bn")
    assert bn == select_trainable(model, "norm")
    bns = _norm_modules(model, (nn.BatchNorm2d,))
    assert count_parameters(model, bn)[0] == _affine_count(bns) + _head_count(model)


def test_norm_on_a_model_without_normalisation_layers_is_one_line():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    model.get_classifier = lambda: model[3]
    with pytest.raises(UnlearnkitError, match="'norm' needs a model with affine") as err:
        select_trainable(model, "norm")
    assert "\n" not in str(err.value)


def test_a_resnet50_norm_state_is_refused_before_any_work(tmp_path):
    """P = 73,610 (BN affine 53,120 + a 10-class head 20,490): one P x P float64 matrix is
    43.3 GB. Built on the meta device: nothing of that size is ever allocated."""
    with torch.device("meta"):
        model = timm.create_model("resnet50", pretrained=False, num_classes=10)
    names = select_trainable(model, "norm")
    assert ParamSpace.from_model(model, names).numel == 73_610
    data = ArraySplit(torch.zeros(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), torch.arange(8))
    path = tmp_path / "state.safetensors"
    with pytest.raises(MemoryBudgetError) as err:
        precompute_state_file(path, model, names, {}, data, 10, 0.1, budget=64 * GIB)
    message = str(err.value)
    assert "\n" not in message
    p = 73_610  # the primal precompute: A, its factor and a temporary, plus a Jacobian chunk
    need = f"{(3 * p * p * 8 + 3 * 64 * 10 * p * 4) / GIB:.1f} GiB"
    for part in ("P = 73,610", "40.4 GiB = 43.3 GB", f"needs about {need}", "only 64.0 GiB"):
        assert part in message, message
    for way_out in ("fewer trainable parameters", f"machine with {need}", "pseudo-NTK", "cg"):
        assert way_out in message, message
    assert not path.exists() and not cache_dir_for(path).exists()  # nothing written
