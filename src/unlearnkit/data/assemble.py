"""Turn a loader's pixels into a DatasetBundle: subsample, carve out the public part, fix the
preprocessing. Every part is an index view of the loader's store (uint8 stays uint8, files
stay on disk); normalisation happens when a batch is loaded."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from unlearnkit.data.base import (
    ArraySplit,
    DatasetBundle,
    channel_stats,
    seeded_permutation,
    stratified_sample,
)
from unlearnkit.data.preprocess import PixelSource, Preprocessing
from unlearnkit.data.samples import Samples, TensorSamples
from unlearnkit.errors import UnlearnkitError


def _store(x: torch.Tensor | Samples, source: PixelSource) -> Samples:
    """The loader's pixels as a view of themselves: no copy (uint8 stays uint8)."""
    if isinstance(x, Samples):
        return x
    return TensorSamples(
        rows=None, prep=None, divisor=source.raw_white / source.pixel_max, storage=x
    )


def _statistics(samples: Samples, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``rows`` in pixel units.

    In memory: the rows at once as float32 (bit for bit the statistics of the old pipeline);
    files: streamed a batch at a time in float64, so memory stays bounded."""
    if isinstance(samples, TensorSamples):
        return channel_stats(samples.units(samples.pixels(rows)))
    view = samples.take(rows).with_prep(None)
    total = torch.zeros(view.sample_shape[0], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for batch in view.batches(256):
        b = batch.to(torch.float64)
        total += b.sum(dim=(0, 2, 3))
        squares += b.square().sum(dim=(0, 2, 3))
        count += b.shape[0] * b.shape[2] * b.shape[3]
    mean = total / count
    var = (squares - count * mean.square()) / max(count - 1, 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


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
    store = _store(x_train, source)
    pool = torch.arange(len(y_train))  # pool rows as given, for loaders that name files
    if subset is not None:
        keep = stratified_sample(y_train, subset, seed)
        store, y_train, pool = store.take(keep), y_train[keep], pool[keep]
    channels, size = int(store.sample_shape[0]), int(store.sample_shape[-1])
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
        mean, std = _statistics(store, rows)
        note = "public split" if rows is pub_idx else "rows of the pool"
        prep = Preprocessing.from_stats(mean, std, size, note, **geometry)
    else:
        mean, std = source.mean, source.std
        if len(mean) == 1 and channels > 1:
            mean, std = mean * channels, std * channels
        prep = Preprocessing.from_stats(mean, std, size, source.note, **geometry)
    store = store.with_prep(prep)
    public = None
    if pub_idx is not None:
        public = ArraySplit(store.take(pub_idx), y_train[pub_idx].long().contiguous(),
                            torch.arange(len(pub_idx)))  # fmt: skip
    test_store = _store(x_test, source).with_prep(prep)
    y_test = y_test.long().contiguous()
    return DatasetBundle(
        name=name,
        train=ArraySplit(store.take(priv_idx), y_train[priv_idx].long().contiguous(), ids),
        test=ArraySplit(test_store, y_test, torch.arange(len(y_test))),
        num_classes=num_classes,
        in_chans=channels,
        image_size=size,
        public=public,
        preprocessing=prep,
        pool_rows={
            "train": pool[priv_idx],
            "public": pool[pub_idx] if pub_idx is not None else None,
        },
    )
