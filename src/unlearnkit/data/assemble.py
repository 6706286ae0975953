"""Turn raw arrays into a DatasetBundle: subsample, carve out the public part, normalise."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from unlearnkit.data.base import (
    ArraySplit,
    DatasetBundle,
    channel_stats,
    make_split,
    seeded_permutation,
    stratified_sample,
)
from unlearnkit.data.preprocess import PixelSource, Preprocessing
from unlearnkit.errors import UnlearnkitError


def _units(x: torch.Tensor, index: torch.Tensor | None, pixel_max: float) -> torch.Tensor:
    """Rows ``index`` of ``x`` (all rows if None) as a new float32 tensor in pixel units, never
    a view of ``x``.

    Raw images may arrive as uint8 (4x smaller; 8-bit values, converted to the data set's
    pixel units here); only the rows a part needs are converted, so the pool is never held as
    float32 next to its parts.
    """
    rows = x if index is None else x[index]
    if x.dtype == torch.uint8:
        return rows.to(torch.float32).div_(255.0 / pixel_max)
    return rows.to(torch.float32, copy=True)


NO_SOURCE = PixelSource(mean=(0.0,), std=(1.0,), note="fixed constants: none (mean 0, std 1)")


def assemble(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    seed: int,
    public_fraction: float,
    subset: int | None = None,
    *,
    source: PixelSource = NO_SOURCE,
    exclude_ids: Iterable[int] | None = None,
) -> DatasetBundle:
    """``public_fraction`` of the training pool becomes public (pretraining) data, disjoint from D.

    ``subset``: keep only a seeded, class-stratified sample of that many rows of the training
    pool, drawn before the public part is carved out (so public and D shrink together and the
    test set stays whole). Only D (the private part) is deletable, and its ids run 0..|D|-1:
    positions in D, as without a subset; the same options give the same D and fingerprint.

    Normalisation constants never depend on D: they are the public part's statistics, or,
    without a public part, the loader's fixed constants (``source``). ``exclude_ids`` leaves
    those ids of D out before anything else is computed, as if they had never been in the
    pool (the retrain-from-scratch reference; the other ids keep their values), so a test can
    check that nothing about the remaining data depends on the deleted samples.
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
    size = int(x_train.shape[-1])
    geometry = {
        "resize": source.resize,
        "pixel_max": source.pixel_max,
        "interpolation": source.interpolation,
    }
    public = None
    if public_fraction > 0:
        perm = seeded_permutation(len(y_train), seed + 7919)
        n_pub = round(len(y_train) * public_fraction)
        pub_idx, priv_idx = perm[:n_pub].sort().values, perm[n_pub:].sort().values
        x_pub = _units(x_train, pub_idx, source.pixel_max)
        mean, std = channel_stats(x_pub)
        prep = Preprocessing.from_stats(mean, std, size, "public split", **geometry)
        public = make_split(prep.normalise_(x_pub), y_train[pub_idx])
        del x_pub
    else:
        priv_idx = torch.arange(len(y_train))
        channels = int(x_train.shape[1])
        mean, std = source.mean, source.std
        if len(mean) == 1 and channels > 1:
            mean, std = mean * channels, std * channels
        prep = Preprocessing.from_stats(mean, std, size, source.note, **geometry)
    ids = torch.arange(len(priv_idx))
    if exclude_ids is not None:
        kept = ~torch.isin(ids, torch.as_tensor(list(exclude_ids), dtype=torch.long))
        priv_idx, ids = priv_idx[kept], ids[kept]
    x_priv = prep.normalise_(_units(x_train, priv_idx, source.pixel_max))
    y_priv = y_train[priv_idx]
    del x_train
    x_test = prep.normalise_(_units(x_test, None, source.pixel_max))
    return DatasetBundle(
        name=name,
        train=ArraySplit(x_priv.contiguous(), y_priv.long().contiguous(), ids),
        test=make_split(x_test, y_test),
        num_classes=num_classes,
        in_chans=int(x_priv.shape[1]),
        image_size=size,
        public=public,
        preprocessing=prep,
    )
