"""Backbones (a registry) and the choice of which parameters train."""

from __future__ import annotations

from unlearnkit.models import lora, prompts, smallcnn, timm_models  # noqa: F401 - registers
from unlearnkit.models.architecture import Architecture, reset_head
from unlearnkit.models.factory import check_trainable_mode, create_model
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
    "Architecture",
    "check_trainable_mode",
    "count_parameters",
    "create_model",
    "head_parameter_names",
    "reset_head",
    "select_trainable",
]
