"""Turn raw arrays into a DatasetBundle: normalise, carve out the public pretraining part."""

from __future__ import annotations

import torch

from unlearnkit.data.base import DatasetBundle, make_split, normalise, seeded_permutation
from unlearnkit.errors import UnlearnkitError


def assemble(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    seed: int,
    public_fraction: float,
) -> DatasetBundle:
    """``public_fraction`` of the training pool becomes public (pretraining) data, disjoint from D.

    Only D (the private part) is deletable, and its ids run 0..|D|-1.
    """
    if not 0.0 <= public_fraction < 1.0:
        raise UnlearnkitError(f"public_fraction must be in [0, 1), got {public_fraction}")
    x_train, y_train = train
    x_test, y_test = test
    if len(y_train) < 2 or len(y_test) < 1:
        raise UnlearnkitError(
            f"dataset {name!r} has too few samples ({len(y_train)} train, {len(y_test)} test)"
        )
    x_train = x_train.float()
    public = None
    if public_fraction > 0:
        perm = seeded_permutation(len(y_train), seed + 7919)
        n_pub = round(len(y_train) * public_fraction)
        pub_idx, priv_idx = perm[:n_pub].sort().values, perm[n_pub:].sort().values
        # Statistics from the public part only: then no preprocessing constant depends on D,
        # and deleting a sample cannot leave a trace in the normalisation.
        x_pub, mean, std = normalise(x_train[pub_idx])
        public = make_split(x_pub, y_train[pub_idx])
        x_train, y_train = x_train[priv_idx], y_train[priv_idx]
        x_train, _, _ = normalise(x_train, mean, std)
    else:  # no public data: statistics of the whole pool (a deletion shifts them by O(1/N))
        x_train, mean, std = normalise(x_train)
    x_test, _, _ = normalise(x_test.float(), mean, std)
    return DatasetBundle(
        name=name,
        train=make_split(x_train, y_train),
        test=make_split(x_test, y_test),
        num_classes=num_classes,
        in_chans=int(x_train.shape[1]),
        image_size=int(x_train.shape[-1]),
        public=public,
    )
