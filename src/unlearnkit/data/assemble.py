"""Turn raw arrays into a DatasetBundle: subsample, carve out the public part, normalise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


_LEAVE_OUT: ContextVar[frozenset[int]] = ContextVar("leave_out", default=frozenset())


@contextmanager
def leaving_out(ids: Iterable[int]) -> Iterator[None]:
    """Every data set assembled inside leaves these ids of D out, as if they had never been in
    the pool: ``load_dataset(..., leave_out=ids)`` builds the retrain-from-scratch data this way,
    through the loader's own code."""
    token = _LEAVE_OUT.set(frozenset(int(i) for i in ids))
    try:
        yield
    finally:
        _LEAVE_OUT.reset(token)


def statistics_rows(
    public_rows: torch.Tensor | None, private_rows: torch.Tensor
) -> torch.Tensor | None:
    """The pool rows the normalisation statistics are computed from: the public part, or none
    (then the loader's fixed constants apply). Never rows of D, which may be deleted: a
    constant computed on D would change with every deletion, and a model trained with it
    would keep a trace of the deleted samples (tests replace this function to show that
    such a dependence is caught)."""
    del private_rows  # never used: that is the point
    return public_rows


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
    pool (the retrain-from-scratch reference; the other ids keep their values; see also
    :func:`leaving_out`), so a test can check that nothing about the remaining data depends
    on the deleted samples.
    """
    if not 0.0 <= public_fraction < 1.0:
        raise UnlearnkitError(f"public_fraction must be in [0, 1), got {public_fraction}")
    x_train, y_train = train
    x_test, y_test = test
    if len(y_train) < 2 or len(y_test) < 1:
        raise UnlearnkitError(
            f"dataset {name!r} has too few samples ({len(y_train)} train, {len(y_test)} test)"
        )
    pool = torch.arange(len(y_train))  # pool rows as given, for loaders that name files
    if subset is not None:
        keep = stratified_sample(y_train, subset, seed)
        x_train, y_train, pool = x_train[keep], y_train[keep], pool[keep]
    size = int(x_train.shape[-1])
    geometry = {
        "resize": source.resize,
        "pixel_max": source.pixel_max,
        "interpolation": source.interpolation,
    }
    pub_idx = None
    priv_idx = torch.arange(len(y_train))
    if public_fraction > 0:
        perm = seeded_permutation(len(y_train), seed + 7919)
        n_pub = round(len(y_train) * public_fraction)
        pub_idx, priv_idx = perm[:n_pub].sort().values, perm[n_pub:].sort().values
    ids = torch.arange(len(priv_idx))
    leave_out = set(_LEAVE_OUT.get()) | set(exclude_ids or ())
    if leave_out:
        kept = ~torch.isin(ids, torch.tensor(sorted(leave_out), dtype=torch.long))
        priv_idx, ids = priv_idx[kept], ids[kept]
    rows = statistics_rows(pub_idx, priv_idx)
    if rows is not None:
        x_stats = _units(x_train, rows, source.pixel_max)
        mean, std = channel_stats(x_stats)
        note = "public split" if rows is pub_idx else "rows of the pool"
        prep = Preprocessing.from_stats(mean, std, size, note, **geometry)
        del x_stats
    else:
        channels = int(x_train.shape[1])
        mean, std = source.mean, source.std
        if len(mean) == 1 and channels > 1:
            mean, std = mean * channels, std * channels
        prep = Preprocessing.from_stats(mean, std, size, source.note, **geometry)
    public = None
    if pub_idx is not None:
        x_pub = prep.normalise_(_units(x_train, pub_idx, source.pixel_max))
        public = make_split(x_pub, y_train[pub_idx])
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
        pool_rows={
            "train": pool[priv_idx],
            "public": pool[pub_idx] if pub_idx is not None else None,
        },
    )
