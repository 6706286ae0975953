"""Build a model by name (any source), or make a user's module ready; check a trainable mode.

``create_model`` and ``prepare_model`` take unlearnkit's own model options next to the
source's: ``head`` (the head's module path, when it cannot be found by convention),
``weights`` (a local checkpoint) and ``weights_skip_head``. So ``head`` can travel inside a
config's ``model_options`` (the CLI's ``--head``) and reach every process that rebuilds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import load_checkpoint
from unlearnkit.models.heads import name_head, replace_head
from unlearnkit.models.peft import select_trainable
from unlearnkit.models.sources import build_from_source


def prepare_model(
    model: nn.Module,
    num_classes: int,
    head: str | None = None,
    weights: str | Path | None = None,
    weights_skip_head: bool = False,
) -> nn.Module:
    """Any ``nn.Module`` made ready for unlearnkit: its head named (or found: timm's
    ``get_classifier``, torchvision's ``fc`` / ``classifier`` / ``heads``), replaced by a new
    Linear when its number of classes differs, then a local checkpoint loaded."""
    if head is not None:
        name_head(model, head)
    replace_head(model, num_classes)
    if weights is not None:
        load_checkpoint(weights, model, skip_head=weights_skip_head)
    elif weights_skip_head:
        raise UnlearnkitError("weights_skip_head needs weights (a checkpoint file)")
    return model


def create_model(
    name: str,
    num_classes: int,
    in_chans: int,
    image_size: int,
    weights: str | Path | None = None,
    head: str | None = None,
    weights_skip_head: bool = False,
    **options: Any,
) -> nn.Module:
    """Build ``name`` (``smallcnn``, ``timm:NAME``, ``torchvision:NAME``,
    ``module:pkg.mod:factory``) with random init; ``weights`` is a local .safetensors / .pt /
    .pth file (never a hub)."""
    model = build_from_source(name, num_classes, in_chans, image_size, options)
    return prepare_model(model, num_classes, head, weights, weights_skip_head)


def check_trainable_mode(model: str, mode: str, model_options: dict[str, Any]) -> None:
    """Fail now if trainable ``mode`` does not exist on ``model`` (e.g. ``bn`` on a ViT).

    The model is built on the meta device (no memory, no init cost: ~0.1 s for vit_tiny) with
    stand-in shapes; which parameters a mode selects depends on the architecture, not on them.
    A model that cannot be built with the stand-in shapes is left to the real build to judge.
    """
    try:
        with torch.device("meta"):
            probe = create_model(model, num_classes=10, in_chans=3, image_size=32, **model_options)
    except UnlearnkitError as exc:  # e.g. num_prompts=0: wrong whatever the data
        raise UnlearnkitError(f"model {model!r} with options {model_options}: {exc}") from None
    except Exception:  # shape-dependent build errors surface at the real build
        return
    try:
        select_trainable(probe, mode)
    except UnlearnkitError as exc:
        raise UnlearnkitError(f"{mode!r} does not fit model {model!r}: {exc}") from None
