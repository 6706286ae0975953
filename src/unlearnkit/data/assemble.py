"""Turn raw arrays into a DatasetBundle: subsample, normalise, carve out the public part."""

from __future__ import annotations

import torch

from unlearnkit.data.base import (
    DatasetBundle,
    channel_stats,
    make_split,
    seeded_permutation,
    stratified_sample,
)
from unlearnkit.errors import UnlearnkitError


def _float_rows(x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Rows ``index`` of ``x`` (all rows if None) as a new float32 tensor, never a view of ``x``.

    Raw images may arrive as uint8 (4x smaller); only the rows a part needs are converted, so
    the pool is never held as float32 next to its parts.
    """
    if index is None:
        return x.to(torch.float32, copy=True)
    return x[index].to(torch.float32)  # indexing by a tensor copies already


def _standardise_(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """In place; the same arithmetic, bit for bit, as ``(x - mean) / std``."""
    return x.sub_(mean).div_(std)


def assemble(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    seed: int,
    public_fraction: float,
    subset: int | None = None,
) -> DatasetBundle:
    """``public_fraction`` of the training pool becomes public (pretraining) data, disjoint from D.

    ``subset``: keep only a seeded, class-stratified sample of that many rows of the training
    pool, drawn before the public part is carved out (so public and D shrink together and the
    test set stays whole). Only D (the private part) is deletable, and its ids run 0..|D|-1:
    positions in D, as without a subset; the same options give the same D and fingerprint.
    """
    if not 0.0 <= public_fraction < 1.0:
        raise UnlearnkitError(f"public_fraction must be in [0, 1), got {public_fraction}")
    x_train, y_train = train
    x_test, y_test = test
    if len(y_train) < 2 or len(y_test) < 1:
        raise UnlearnkitError(
            f"dataset {name!r} has too few samples ({len(y_train)} train, {len(y_test)} test)"
        )
    if subset is not None:
        keep = stratified_sample(y_train, subset, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    public = None
    if public_fraction > 0:
        perm = seeded_permutation(len(y_train), seed + 7919)
        n_pub = round(len(y_train) * public_fraction)
        pub_idx, priv_idx = perm[:n_pub].sort().values, perm[n_pub:].sort().values
        # Statistics from the public part only: then no preprocessing constant depends on D,
        # and deleting a sample cannot leave a trace in the normalisation.
        x_pub = _float_rows(x_train, pub_idx)
        mean, std = channel_stats(x_pub)
        public = make_split(_standardise_(x_pub, mean, std), y_train[pub_idx])
        del x_pub
        x_priv = _standardise_(_float_rows(x_train, priv_idx), mean, std)
        y_priv = y_train[priv_idx]
    else:  # no public data: statistics of the whole pool (a deletion shifts them by O(1/N))
        x_priv = _float_rows(x_train)
        mean, std = channel_stats(x_priv)
        _standardise_(x_priv, mean, std)
        y_priv = y_train
    del x_train
    x_test = _standardise_(_float_rows(x_test), mean, std)
    return DatasetBundle(
        name=name,
        train=make_split(x_priv, y_priv),
        test=make_split(x_test, y_test),
        num_classes=num_classes,
        in_chans=int(x_priv.shape[1]),
        image_size=int(x_priv.shape[-1]),
        public=public,
    )
