"""The backbone registry (timm-style ``create_model``)."""

from __future__ import annotations

from torch import nn

from unlearnkit.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
