"""Label noise on purpose: a controlled population of samples that can only be memorized.

Digits is easy (about 99% test accuracy), so almost nothing in it needs memorizing; flipping
the labels of a small random share of D creates samples whose only route to being fitted is
memorization, which makes estimators and proxies measurable.

The ``noisy`` dataset wraps any registered dataset this way, so every command (``memorize``,
``train``, ``unlearn``) sees the same relabelled D and a score file made on it matches:
``dataset: noisy`` with ``dataset_options: {base: digits, label_noise: 0.05}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from unlearnkit.data.base import DatasetBundle
from unlearnkit.data.registry import DATASETS, load_dataset
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
    noisy = train.with_labels(y)
    name = f"{bundle.name}+noise{fraction:g}"
    return (
        # no manifest: its labels are the files' own; the fingerprint then hashes the new ones
        dataclasses.replace(bundle, name=name, train=noisy, manifest=None),
        torch.sort(train.ids[chosen]).values,
    )


@DATASETS.register("noisy")
def noisy(
    data_dir: str | None = None,
    seed: int = 0,
    base: str = "digits",
    label_noise: float = 0.05,
    noise_seed: int = 0,
    public_fraction: float = 0.0,
    base_options: dict[str, Any] | None = None,
    subset: int | None = None,
) -> DatasetBundle:
    """Dataset ``base`` with ``label_noise`` of its training labels relabelled at random.

    ``subset`` is the base data set's option (a stratified sample of its training pool).
    """
    if base == "noisy":
        raise UnlearnkitError("dataset 'noisy' needs a base dataset other than itself")
    if not 0.0 < label_noise < 1.0:
        raise UnlearnkitError(f"dataset 'noisy' needs label_noise in (0, 1), got {label_noise}")
    options = dict(base_options or {})
    if subset is not None:
        options["subset"] = subset
    bundle = load_dataset(base, data_dir, seed, public_fraction=public_fraction, **options)
    return add_label_noise(bundle, label_noise, noise_seed)[0]
