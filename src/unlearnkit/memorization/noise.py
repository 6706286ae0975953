"""Label noise on purpose: a controlled population of samples that can only be memorized.

Digits is easy (about 99% test accuracy), so almost nothing in it needs memorizing; flipping
the labels of a small random share of D creates samples whose only route to being fitted is
memorization, which makes estimators and proxies measurable.
"""

from __future__ import annotations

import dataclasses

import torch

from unlearnkit.data.base import ArraySplit, DatasetBundle
from unlearnkit.errors import UnlearnkitError


def add_label_noise(
    bundle: DatasetBundle, fraction: float, seed: int = 0
) -> tuple[DatasetBundle, torch.Tensor]:
    """A copy of ``bundle`` whose training labels are wrong for ``fraction`` of D.

    Each chosen sample gets a different class drawn uniformly; test and public data are kept.
    Returns the new bundle and the sorted ids of the relabelled samples.
    """
    if not 0.0 <= fraction < 1.0:
        raise UnlearnkitError(f"label noise must be a fraction in [0, 1), got {fraction}")
    train = bundle.train
    count = round(fraction * len(train))
    if count == 0:
        return bundle, torch.empty(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed + 15_485_863)
    chosen = torch.randperm(len(train), generator=gen)[:count]
    shift = torch.randint(1, bundle.num_classes, (count,), generator=gen)
    y = train.y.clone()
    y[chosen] = (y[chosen] + shift) % bundle.num_classes
    noisy = ArraySplit(train.x, y, train.ids)
    name = f"{bundle.name}+noise{fraction:g}"
    return (
        dataclasses.replace(bundle, name=name, train=noisy),
        torch.sort(train.ids[chosen]).values,
    )
