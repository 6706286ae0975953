"""Forget sets chosen by memorization: ``memorization:LEVEL:N[:PATH]``.

LEVEL is ``high`` (the N most memorized samples), ``low`` (the N least), ``mid`` or ``medium``
(N around the median) or ``mixed`` (a third from each). N is a count, or a fraction of D when
below 1. PATH is a score file from ``unlearnkit memorize`` (default
``runs/memorize/scores.csv``); a file made for other data is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.forget import FORGET_SELECTORS
from unlearnkit.errors import UnlearnkitError
from unlearnkit.memorization.scores import load_scores
from unlearnkit.registry import Registry

DEFAULT_SCORES = Path("runs/memorize/scores.csv")
LEVELS: Registry[torch.Tensor] = Registry("memorization level")


@LEVELS.register("low")
def lowest(order: torch.Tensor, count: int) -> torch.Tensor:
    return order[:count]


@LEVELS.register("high")
def highest(order: torch.Tensor, count: int) -> torch.Tensor:
    return order[len(order) - count :]


@LEVELS.register("medium")
@LEVELS.register("mid")
def middle(order: torch.Tensor, count: int) -> torch.Tensor:
    start = max(0, (len(order) - count) // 2)
    return order[start : start + count]


@LEVELS.register("mixed")
def mixed(order: torch.Tensor, count: int) -> torch.Tensor:
    third = count // 3
    return torch.cat(
        [lowest(order, third), middle(order, third), highest(order, count - 2 * third)]
    )


def _count(text: str, n: int, spec: str) -> int:
    try:
        amount = float(text)
    except ValueError:
        raise UnlearnkitError(f"{spec} - N must be a count or a fraction, got {text!r}") from None
    count = round(amount * n) if 0 < amount < 1 else int(amount)
    if amount <= 0 or (amount >= 1 and amount != int(amount)) or not 0 < count < n:
        raise UnlearnkitError(f"{spec} - need a fraction in (0, 1) or a count in 1..{n - 1}")
    return count


@FORGET_SELECTORS.register("memorization")
def by_memorization(train: ArraySplit, argument: str, seed: int) -> torch.Tensor:
    spec = f"memorization:{argument}"
    parts = argument.split(":", 2)
    if len(parts) < 2:
        raise UnlearnkitError(
            f"{spec} - use memorization:LEVEL:N[:PATH] with LEVEL one of "
            f"{', '.join(LEVELS.names())}"
        )
    pick: Callable[[torch.Tensor, int], torch.Tensor] = LEVELS.get(parts[0])
    count = _count(parts[1], len(train), spec)
    path = Path(parts[2]) if len(parts) == 3 and parts[2] else DEFAULT_SCORES
    table = load_scores(path)
    table.check_matches(train, source=f"score file {path}")
    order = torch.argsort(table.memorization(), stable=True)
    return table.sample_ids[pick(order, count)]
