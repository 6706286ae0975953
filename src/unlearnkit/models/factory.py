"""Build a registered backbone by name, and check a trainable mode fits it before any work."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import load_checkpoint
from unlearnkit.models.peft import select_trainable
from unlearnkit.models.registry import MODELS


def create_model(
    name: str,
    num_classes: int,
    in_chans: int,
    image_size: int,
    weights: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registered backbone; ``weights`` is a local safetensors/.pth file (never a hub)."""
    factory = MODELS.get(name)
    accepted = set(inspect.signature(factory).parameters) - {
        "num_classes",
        "in_chans",
        "image_size",
    }
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UnlearnkitError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(sorted(accepted)) or 'none'}"
        )
    model = factory(num_classes=num_classes, in_chans=in_chans, image_size=image_size, **kwargs)
    if weights is not None:
        load_checkpoint(weights, model)
    return model


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
