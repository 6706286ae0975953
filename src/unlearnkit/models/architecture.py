"""A network's blueprint: enough to build the same model in another process or after a reload.

Ray tasks, worker processes and stored ensembles rebuild their networks from this, so it holds
only plain values (it pickles and serialises to JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.models.factory import create_model


@dataclass(frozen=True)
class Architecture:
    """A registered backbone name, the data's shape and the model options."""

    name: str
    num_classes: int
    in_chans: int
    image_size: int
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, weights: str | Path | None = None) -> nn.Module:
        return create_model(
            self.name,
            self.num_classes,
            self.in_chans,
            self.image_size,
            weights=weights,
            **self.options,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "image_size": self.image_size,
            "options": dict(self.options),
        }


def reset_head(model: nn.Module, seed: int) -> None:
    """A new classifier head for the private task (the pretrained one may know D_f's classes)."""
    torch.manual_seed(seed + 1)
    head = model.get_classifier()
    for module in head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
