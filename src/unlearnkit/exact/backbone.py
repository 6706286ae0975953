"""The frozen backbone every block sits on: random, pretrained on public data, or from a file.

S3T assumes a pretrained backbone that never saw the private data D; here it is trained on the
data set's disjoint public split (or loaded from a local checkpoint), so deleting a sample of D
never has to touch it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.models import Architecture, select_trainable
from unlearnkit.training import TrainConfig, train


def _fresh(
    spec: Architecture, seed: int, weights: str | Path | None = None, skip_head: bool = False
) -> torch.nn.Module:
    torch.manual_seed(seed)
    return spec.build(weights, weights_skip_head=skip_head)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def random_backbone(spec: Architecture, seed: int) -> dict[str, torch.Tensor]:
    """A seeded random-init backbone (when no public data or weights are given)."""
    return _state(_fresh(spec, seed))


def pretrained_backbone(
    spec: Architecture, public: ArraySplit, recipe: TrainConfig, seed: int
) -> dict[str, torch.Tensor]:
    """Train the whole backbone on ``public`` (disjoint from D); its head is replaced later."""
    model = _fresh(spec, seed)
    train(model, public, recipe.model_copy(update={"seed": seed}), select_trainable(model, "full"))
    return _state(model)


def file_backbone(
    spec: Architecture, weights: str | Path, skip_head: bool = False
) -> dict[str, torch.Tensor]:
    """A local checkpoint (safetensors or .pth; a mismatch is a clear error). ``skip_head``:
    the checkpoint's head is left out (e.g. 1,000 ImageNet classes) and the seeded new head
    for the data's classes is kept."""
    return _state(_fresh(spec, 0, weights, skip_head))
