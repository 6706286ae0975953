"""Forget-set specs: ``class:K``, ``random:N`` / ``random:0.1``, ``indices:PATH``,
``paths:PATH`` (image files, for data read from a folder), and more.

A spec is ``kind:argument``; each kind is a registered selector that maps (D, argument, seed) to
the sample ids to forget. ``memorization:LEVEL:N[:PATH]`` picks by a per-sample score file from
``unlearnkit memorize``: LEVEL is ``high`` (the N most memorized samples), ``low`` (the N
least), ``mid`` / ``medium`` (N around the median) or ``mixed`` (a third from each); N is a count,
or a fraction of D when below 1; PATH defaults to ``runs/memorize/scores.csv``; a score file made
for other data is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.scores import load_scores
from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry

Selector = Callable[[ArraySplit, str, int], torch.Tensor]
FORGET_SELECTORS: Registry[torch.Tensor] = Registry("forget-set kind")


def select_forget(train: ArraySplit, spec: str, seed: int = 0) -> torch.Tensor:
    """Sorted ids of the forget set named by ``spec``; refuses empty or whole-data sets."""
    kind, sep, argument = spec.partition(":")
    if not sep or not argument:
        raise UnlearnkitError(
            f"forget spec {spec!r} must look like KIND:ARG "
            f"(kinds: {', '.join(FORGET_SELECTORS.names())})"
        )
    ids = FORGET_SELECTORS.get(kind)(train, argument, seed)
    ids = torch.unique(torch.as_tensor(ids, dtype=torch.long))
    if ids.numel() == 0:
        raise UnlearnkitError(f"forget spec {spec!r} selects no samples")
    if ids.numel() >= len(train):
        raise UnlearnkitError(
            f"forget spec {spec!r} selects the whole training set; nothing would be left to retain"
        )
    return ids


@FORGET_SELECTORS.register("class")
def by_class(train: ArraySplit, argument: str, seed: int) -> torch.Tensor:
    try:
        label = int(argument)
    except ValueError:
        raise UnlearnkitError(f"class:{argument} - the class must be an integer") from None
    present = sorted(int(c) for c in torch.unique(train.y))
    if label not in present:
        raise UnlearnkitError(
            f"class:{label} - no such class in the training set "
            f"(classes: {present[0]}..{present[-1]})"
        )
    return train.ids[train.y == label]


@FORGET_SELECTORS.register("random")
def at_random(train: ArraySplit, argument: str, seed: int) -> torch.Tensor:
    """``random:N`` (an integer count) or ``random:0.1`` (a fraction, written with a point)."""
    hint = f"random:{argument} - give a count (100) or a fraction (0.1)"
    try:
        is_fraction = "." in argument or "e" in argument.lower()
        count = round(float(argument) * len(train)) if is_fraction else int(argument)
    except ValueError:
        raise UnlearnkitError(hint) from None
    if is_fraction and not 0 < float(argument) <= 1:
        raise UnlearnkitError(f"random:{argument} - a fraction must be in (0, 1)")
    if count < 1 or count > len(train):
        raise UnlearnkitError(f"random:{argument} - the count must be in 1..{len(train) - 1}")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 104729))
    return train.ids[perm[:count]]


@FORGET_SELECTORS.register("indices")
def from_file(train: ArraySplit, argument: str, seed: int) -> torch.Tensor:
    """A file with one id per line, or a JSON list of ids."""
    path = Path(argument).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise UnlearnkitError(
            f"indices:{argument} - cannot read the file: {exc.strerror or exc}"
        ) from None
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else text.split()
        ids = [int(v) for v in values]
    except (ValueError, TypeError):
        raise UnlearnkitError(
            f"indices:{argument} - expected integer ids, one per line or a JSON list"
        ) from None
    known = set(train.ids.tolist())
    bad = [i for i in ids if i not in known]
    if bad:
        raise UnlearnkitError(
            f"indices:{argument} - id {bad[0]} is out of range (valid: 0..{len(train) - 1})"
        )
    return torch.tensor(ids, dtype=torch.long)


@FORGET_SELECTORS.register("paths")
def from_paths(train: ArraySplit, argument: str, seed: int) -> torch.Tensor:
    """Deletion by file: a file listing image paths (relative to the data folder, as in the
    model's ``manifest.csv``), one per line."""
    if train.paths is None:
        raise UnlearnkitError(f"paths:{argument} - this data set is not read from files")
    try:
        wanted = [line.strip() for line in Path(argument).expanduser().read_text().splitlines()]
    except OSError as exc:
        raise UnlearnkitError(
            f"paths:{argument} - cannot read the file: {exc.strerror or exc}"
        ) from None
    row_of = {p: i for i, p in enumerate(train.paths)}
    rows = []
    for path in filter(None, wanted):
        row = row_of.get(Path(path).as_posix())
        if row is None:
            raise UnlearnkitError(f"paths:{argument} - {path} is not in the training set D")
        rows.append(row)
    return train.ids[torch.tensor(rows, dtype=torch.long)]


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
    return table.sample_ids[pick(ranked(table.memorization()), count)]


TIE_SEED = 0  # fixed: a level set is a property of the scores, the same in every run


def ranked(memorization: torch.Tensor) -> torch.Tensor:
    """Row order from least to most memorized, equal scores in one fixed random order.

    Ties are the rule, not the exception: a proxy that counts right epochs has epochs + 1
    values and FZ is exactly 0 for most of an easy data set, so a level can lie inside one tie;
    ordered by row, it would fill with the lowest ids (in an image folder, the first classes).
    The draw does not follow the run's seed, so a level set stays one fixed set (the audit's
    fixed-forget protocol, reruns) like ``class:3``."""
    generator = torch.Generator().manual_seed(TIE_SEED)
    shuffle = torch.randperm(len(memorization), generator=generator)
    return shuffle[torch.argsort(memorization[shuffle], stable=True)]
