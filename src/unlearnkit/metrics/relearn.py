"""Relearn time: epochs of fine-tuning on D_f until forget accuracy is back to a threshold.

A model that only hid D_f relearns it in very few epochs; one that truly forgot needs about as
long as the retrained reference. ``None`` when the threshold is not reached within the budget.
"""

from __future__ import annotations

import copy

from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.training import TrainConfig, accuracy, train


def relearn_epochs(
    model: nn.Module,
    forget: ArraySplit,
    trainable: list[str],
    threshold: float = 90.0,
    max_epochs: int = 20,
    lr: float = 0.01,
    seed: int = 0,
) -> float | None:
    """Epochs (0 if already at ``threshold`` percent) of SGD on D_f to reach the threshold."""
    model = copy.deepcopy(model)
    if accuracy(model, forget) >= threshold:
        return 0.0
    cfg = TrainConfig(epochs=1, lr=lr, batch_size=64, schedule="constant", seed=seed)
    for epoch in range(1, max_epochs + 1):
        train(model, forget, cfg.model_copy(update={"seed": seed + epoch}), trainable)
        if accuracy(model, forget) >= threshold:
            return float(epoch)
    return None
