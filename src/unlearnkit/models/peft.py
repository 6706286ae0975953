"""Which parameters train: ``full``, ``bn`` (BatchNorm affine + head); issues add more.

Each mode is a registered function returning parameter names; ``select_trainable`` applies it
(requires_grad on exactly those) so the optimizer never sees a frozen parameter.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

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


@TRAINABLE.register("bn")
def batchnorm_and_head(model: nn.Module) -> list[str]:
    """BatchNorm gamma/beta plus the (new) classifier head: Fast-NTK's CNN setting."""
    norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    chosen: set[str] = set(head_parameter_names(model))
    has_bn = False
    for prefix, module in model.named_modules():
        if isinstance(module, norm_types) and module.affine:
            has_bn = True
            chosen.update(f"{prefix}.{n}" for n, _ in module.named_parameters(recurse=False))
    if not has_bn:
        raise UnlearnkitError(
            "trainable mode 'bn' needs a model with BatchNorm layers; "
            "this model has none (use 'prompts' for a ViT)"
        )
    return [name for name, _ in model.named_parameters() if name in chosen]


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
