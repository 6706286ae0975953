"""Backbones (a registry) and the choice of which parameters train."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from unlearnkit.models import lora, prompts, smallcnn, timm_models  # noqa: F401 - registers
from unlearnkit.models.checkpoint import load_checkpoint
from unlearnkit.models.peft import (
    TRAINABLE,
    count_parameters,
    head_parameter_names,
    select_trainable,
)
from unlearnkit.models.registry import MODELS

__all__ = [
    "MODELS",
    "TRAINABLE",
    "count_parameters",
    "create_model",
    "head_parameter_names",
    "select_trainable",
]


def create_model(
    name: str,
    num_classes: int,
    in_chans: int,
    image_size: int,
    weights: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registered backbone; ``weights`` is a local safetensors/.pth file (never a hub)."""
    model = MODELS.get(name)(
        num_classes=num_classes, in_chans=in_chans, image_size=image_size, **kwargs
    )
    if weights is not None:
        load_checkpoint(weights, model)
    return model
