"""The backbone registry (timm-style ``create_model``); packages add theirs through the
``unlearnkit.models`` entry-point group (a factory taking num_classes, in_chans, image_size)."""

from __future__ import annotations

from torch import nn

from unlearnkit.registry import Registry

ENTRY_POINTS = "unlearnkit.models"


def _is_factory(obj: object) -> str | None:
    return None if callable(obj) else f"{type(obj).__name__} is not a model factory"


MODELS: Registry[nn.Module] = Registry("model", ENTRY_POINTS, _is_factory)
