"""Does the original model memorize? Its train-test accuracy gap, and a recipe that reaches one.

Memorization scores and RUM only mean something where the model fits D better than it
generalises: a model with train 91.0% vs test 90.4% has almost nothing to forget beyond what
retraining loses too. The memorization papers train all parameters until the gap is wide; here
``gap_check`` measures it on a trained model and ``train_until_gap`` tries a grid of epoch counts
(each a complete run of the recipe, so the chosen count is an ordinary fixed recipe that the
Feldman-Zhang subset models and every retrain can repeat) and stops at the first that reaches
the target. A run that never reaches it says so (``GapCheck.reached`` is False), it does not
fail: the caller decides whether a smaller gap is still worth measuring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

from torch import nn

from unlearnkit.data.base import DatasetBundle
from unlearnkit.errors import UnlearnkitError
from unlearnkit.recipe import RecipeConfig, TrainedModel
from unlearnkit.recipe.build import train_original
from unlearnkit.training import accuracy

R = TypeVar("R")


@dataclass(frozen=True)
class GapCheck:
    """Train (all of D) and test accuracy of one trained model, in percent, against a target."""

    epochs: int
    train_acc: float
    test_acc: float
    target: float

    @property
    def gap(self) -> float:
        return self.train_acc - self.test_acc

    @property
    def reached(self) -> bool:
        return self.gap >= self.target

    def message(self) -> str:
        verdict = "reached" if self.reached else "NOT reached"
        return (
            f"train-test gap {self.gap:.1f} points (train {self.train_acc:.1f}%, test "
            f"{self.test_acc:.1f}%, {self.epochs} epochs): target {self.target:g} {verdict}"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "gap": self.gap, "reached": self.reached}


def gap_check(model: nn.Module, bundle: DatasetBundle, target: float, epochs: int) -> GapCheck:
    """The gap of ``model`` trained on ``bundle.train`` for ``epochs`` epochs."""
    return GapCheck(epochs, accuracy(model, bundle.train), accuracy(model, bundle.test), target)


def with_epochs(cfg: RecipeConfig, epochs: int) -> RecipeConfig:
    """``cfg`` training for exactly ``epochs`` epochs on D (everything else unchanged): a count
    given here is used as given, so a preset's epoch scaling no longer lists it."""
    update: dict = {"train": cfg.train.model_copy(update={"epochs": epochs})}
    scaling = cfg.epoch_scaling
    if scaling is not None and "train" in scaling.base:
        base = {k: v for k, v in scaling.base.items() if k != "train"}
        update["epoch_scaling"] = scaling.model_copy(update={"base": base})
    return cfg.model_copy(update=update)


def check_epoch_grid(grid: Sequence[int]) -> list[int]:
    """The grid, validated: positive, strictly increasing epoch counts."""
    counts = list(grid)
    if not counts or any(e < 1 for e in counts) or counts != sorted(set(counts)):
        raise UnlearnkitError(
            f"epoch grid {counts} - give positive epoch counts in increasing order, e.g. 8,16,32"
        )
    return counts


def parse_epoch_grid(text: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``, validated (``check_epoch_grid``)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise UnlearnkitError(
            f"epoch grid {text!r} - give comma-separated epoch counts, e.g. 8,16,32"
        ) from None
    return check_epoch_grid(counts)


def search_gap(
    cfg: RecipeConfig,
    bundle: DatasetBundle,
    target: float,
    epoch_grid: Sequence[int],
    train: Callable[[RecipeConfig], tuple[nn.Module, R]],
) -> tuple[RecipeConfig, R, list[GapCheck]]:
    """Train with each epoch count of ``epoch_grid`` in turn (``train`` runs one complete
    recipe and returns its model and whatever else the caller keeps, e.g. proxies recorded on
    the way) until the train-test gap reaches ``target`` points.

    Returns the recipe with the chosen epoch count (the first that reached the target, else the
    last tried), the last ``train`` result, and every check made, in order: a caller whose
    ``train`` is its seed-0 run reuses that run instead of training it again."""
    checks: list[GapCheck] = []
    for epochs in check_epoch_grid(epoch_grid):
        chosen = with_epochs(cfg, epochs)
        model, result = train(chosen)
        checks.append(gap_check(model, bundle, target, epochs))
        if checks[-1].reached:
            break
    return chosen, result, checks


def train_until_gap(
    cfg: RecipeConfig,
    bundle: DatasetBundle,
    target: float,
    epoch_grid: Sequence[int],
    seed: int = 0,
) -> tuple[RecipeConfig, TrainedModel, list[GapCheck]]:
    """``search_gap`` with the recipe's plain training (complete runs, the recipe's schedule
    each time): the chosen recipe, its trained model and every check."""

    def train(chosen: RecipeConfig) -> tuple[nn.Module, TrainedModel]:
        trained = train_original(chosen, bundle, seed)
        return trained.model, trained

    return search_gap(cfg, bundle, target, epoch_grid, train)


__all__ = [
    "GapCheck",
    "check_epoch_grid",
    "gap_check",
    "parse_epoch_grid",
    "search_gap",
    "train_until_gap",
    "with_epochs",
]
