"""Backbones (a registry) and the choice of which parameters train."""

from __future__ import annotations

from unlearnkit.models import lora, prompts, smallcnn, timm_models  # noqa: F401 - registers
from unlearnkit.models.architecture import Architecture, reset_head
from unlearnkit.models.factory import check_trainable_mode, create_model, prepare_model
from unlearnkit.models.heads import Head, find_head, name_head, replace_head
from unlearnkit.models.peft import (
    TRAINABLE,
    count_parameters,
    head_parameter_names,
    select_trainable,
)
from unlearnkit.models.registry import MODELS
from unlearnkit.models.sources import SOURCES, catalogue, check_model_name

__all__ = [
    "MODELS",
    "SOURCES",
    "TRAINABLE",
    "Architecture",
    "Head",
    "catalogue",
    "check_model_name",
    "check_trainable_mode",
    "count_parameters",
    "create_model",
    "find_head",
    "head_parameter_names",
    "name_head",
    "prepare_model",
    "replace_head",
    "reset_head",
    "select_trainable",
]
