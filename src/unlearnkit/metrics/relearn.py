"""Relearn time: epochs of fine-tuning on D_f until forget accuracy is back to a threshold.

A model that only hid D_f relearns it in very few epochs; one that truly forgot needs about as
long as the retrained reference. ``None`` when the threshold is not reached within the budget:
a censored value (at least ``max_epochs``), which a summary must report as such
(``censored_summary``), never average away.

Every model relearns in one mode: BatchNorm in eval mode (``RELEARN_BN``), its running
statistics fixed, so relearning is measured in the weights alone. Train-mode relearning on D_f
batches would let single-class batch statistics relearn a class with no weight moving, and
the linearized Fast-NTK model can only run in eval mode; one mode for all keeps methods
comparable.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.training import TrainConfig, accuracy, train

RELEARN_BN = "frozen"  # BatchNorm in eval mode while relearning, for every method
RELEARN_BATCH_SIZE = 64  # one batch size for every method (a relearn budget scales with it)


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
    cfg = TrainConfig(
        epochs=1, lr=lr, batch_size=RELEARN_BATCH_SIZE, schedule="constant", seed=seed
    )
    for epoch in range(1, max_epochs + 1):
        train(
            model, forget, cfg.model_copy(update={"seed": seed + epoch}), trainable, eval_mode=True
        )
        if accuracy(model, forget) >= threshold:
            return float(epoch)
    return None


def censored_summary(values: list[float | None], budget: int) -> dict[str, Any]:
    """Relearn epochs over seeds with the censored ones (``None``: not relearned within
    ``budget`` epochs) kept in view.

    ``mean`` is the plain mean when every seed relearned, else None; ``at_least`` is the mean
    with each censored seed counted at the budget, a lower bound of the true mean; ``censored``
    counts the censored seeds."""
    n = len(values)
    censored = sum(v is None for v in values)
    filled = [budget if v is None else v for v in values]
    bound = sum(filled) / n if n else None
    return {
        "mean": bound if censored == 0 else None,
        "at_least": bound,
        "censored": censored,
        "n": n,
        "budget": budget,
    }


def censored_text(entry: dict[str, Any]) -> str:
    """One table cell: ``3.0``, or ``>= 19.7 (2/3 seeds >= 20)`` when some seeds never
    relearned within the budget."""
    if entry["at_least"] is None:
        return "-"
    if not entry["censored"]:
        return f"{entry['mean']:.1f}"
    return (
        f">= {entry['at_least']:.1f} ({entry['censored']}/{entry['n']} seeds >= {entry['budget']})"
    )
