"""A network's blueprint: enough to build the same model in another process or after a reload.

Ray tasks, worker processes and stored ensembles rebuild their networks from this, so it holds
only plain values (it pickles and serialises to JSON). A name from timm, torchvision or a
``module:`` factory rebuilds anywhere the library or module imports; a name registered at run
time (``MODELS.register`` in the user's module) travels with the module that registered it, and
a spawned worker or Ray task imports that module before it builds.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.models.factory import create_model
from unlearnkit.models.heads import find_head
from unlearnkit.models.registry import MODELS


@dataclass(frozen=True)
class Architecture:
    """A registered backbone name, the data's shape and the model options."""

    name: str
    num_classes: int
    in_chans: int
    image_size: int
    options: dict[str, Any] = field(default_factory=dict)

    def build(
        self, weights: str | Path | None = None, weights_skip_head: bool = False
    ) -> nn.Module:
        """The model at init, or with a local checkpoint (``weights_skip_head``: its head
        ignored, the model keeps a new one for its own classes)."""
        return create_model(
            self.name,
            self.num_classes,
            self.in_chans,
            self.image_size,
            weights=weights,
            weights_skip_head=weights_skip_head,
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

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the module that registered the name (imported again on unpickling)."""
        origin = None
        if ":" not in self.name and self.name in MODELS:
            origin = getattr(MODELS.get(self.name), "__module__", None)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return (_restore, (type(self), values, origin))


def _restore(cls: type[Architecture], values: dict[str, Any], origin: str | None) -> Architecture:
    if origin and origin not in sys.modules and origin != "__main__":
        # if it fails, the build names the model as unknown, in one line
        with contextlib.suppress(ImportError):
            importlib.import_module(origin)
    return cls(**values)


def reset_head(model: nn.Module, seed: int) -> None:
    """A new classifier head for the private task (the pretrained one may know D_f's classes)."""
    torch.manual_seed(seed + 1)
    for module in find_head(model).module.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
