"""Which parameters train: ``full``, ``bn`` (BatchNorm affine + head), ``norm`` (the affine
parameters of every normalisation layer + head); ``prompts`` and ``lora`` live with their modules.

Each mode is a registered function returning parameter names; ``select_trainable`` applies it
(requires_grad on exactly those) so the optimizer never sees a frozen parameter.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.heads import find_head
from unlearnkit.registry import Registry

Selector = Callable[[nn.Module], list[str]]
TRAINABLE: Registry[list[str]] = Registry("trainable-parameter mode")


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names of the classifier head's parameters (found by ``models.heads.find_head``)."""
    return find_head(model).parameter_names()


@TRAINABLE.register("full")
def full(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


# BatchNorm*, SyncBatchNorm and timm's BatchNormAct2d (all _BatchNorm), InstanceNorm (_NormBase),
# LayerNorm (timm's LayerNorm and LayerNorm2d subclass it), GroupNorm (timm's GroupNormAct too)
NORM_TYPES: tuple[type[nn.Module], ...] = (_NormBase, nn.LayerNorm, nn.GroupNorm)
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def affine_parameter_names(model: nn.Module, types: tuple[type[nn.Module], ...]) -> list[str]:
    """The affine (own, not nested) parameters of every module of ``types``, in model order."""
    return [
        f"{prefix}.{n}" if prefix else n
        for prefix, module in model.named_modules()
        if isinstance(module, types)
        for n, _ in module.named_parameters(recurse=False)
    ]


def _with_head(model: nn.Module, chosen: list[str]) -> list[str]:
    wanted = set(chosen) | set(head_parameter_names(model))
    return [name for name, _ in model.named_parameters() if name in wanted]


@TRAINABLE.register("bn")
def batchnorm_and_head(model: nn.Module) -> list[str]:
    """BatchNorm gamma/beta plus the (new) classifier head: Fast-NTK's CNN setting."""
    chosen = affine_parameter_names(model, BATCHNORM_TYPES)
    if not chosen:
        raise UnlearnkitError(
            "trainable mode 'bn' needs a model with BatchNorm layers; "
            "this model has none (use 'norm' for LayerNorm / GroupNorm, 'prompts' for a ViT)"
        )
    return _with_head(model, chosen)


@TRAINABLE.register("norm")
def norm_and_head(model: nn.Module) -> list[str]:
    """Every normalisation layer's affine parameters (BatchNorm, LayerNorm, GroupNorm and timm's
    variants) plus the head: ``bn`` generalised to ConvNeXt (LayerNorm) and ViTs."""
    chosen = affine_parameter_names(model, NORM_TYPES)
    if not chosen:
        raise UnlearnkitError(
            "trainable mode 'norm' needs a model with affine normalisation layers (BatchNorm, "
            "LayerNorm, GroupNorm); this model has none (use 'lora' or 'full')"
        )
    return _with_head(model, chosen)


def select_trainable(model: nn.Module, mode: str) -> list[str]:
    """Freeze everything but the chosen mode's parameters; return their names in model order."""
    names = TRAINABLE.get(mode)(model)
    wanted = set(names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)
    return names


def count_parameters(model: nn.Module, names: list[str]) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in names), sum(p.numel() for p in params.values())
