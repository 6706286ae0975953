"""Batches of a split through a torch DataLoader: worker processes decode, the loop trains.

One item of the DataLoader is one whole batch (its rows and its augmentation seed): the
dataset's ``__getitem__`` loads those rows through the split's
:class:`~unlearnkit.data.samples.Samples` view, so an in-memory store is indexed once per
batch and an image folder decodes exactly the files of the batch. The plan (which rows, in
which order, with which seeds) is made in the main process before any worker starts, so the
batches are the same for ``workers=0`` and ``workers=N``; workers only do the decoding.

Workers: forked (or spawned) by the DataLoader with the split's view, never a copy of the data
set per worker (an in-memory store is shared copy-on-write or through shared memory; files
stay on disk, their paths in two numpy arrays; the parent's Python objects are frozen for the
fork, so the workers' garbage collector does not copy them). Each worker pins one thread so N
workers and the training threads do not oversubscribe the cores, and returns its batch-sized
blocks to the system (``worker_heap``: otherwise glibc keeps every batch a worker made).
``pin_memory`` (the caller passes True when the device is CUDA) makes the host-to-device
copies asynchronous.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.transforms import Augmentation
from unlearnkit.data.worker_heap import pin_mmap_threshold

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Item = tuple[torch.Tensor, int | None]


class SplitBatches(Dataset[Batch]):
    """A split seen as a map from (rows, seed) to a batch (inputs, labels, ids)."""

    def __init__(self, split: ArraySplit, augment: Augmentation | None = None) -> None:
        self.split = split
        self.augment = augment

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: Item) -> Batch:
        rows, seed = item
        x = self.split.samples.load(rows, self.augment, seed)
        return x, self.split.y[rows], self.split.ids[rows]


def _start_worker(worker_id: int) -> None:
    """Each worker decodes on one thread (N workers + the training threads share the cores),
    with large blocks served by mmap so its heap does not keep every batch it sent
    (``worker_heap``)."""
    del worker_id
    torch.set_num_threads(1)
    pin_mmap_threshold()


def iterate_batches(
    split: ArraySplit,
    plan: Sequence[torch.Tensor],
    *,
    seeds: Sequence[int | None] | None = None,
    augment: Augmentation | None = None,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """The batches (inputs, labels, ids) of ``plan`` (view positions per batch), in order.

    ``workers=0`` loads in this process without a DataLoader (bit for bit what indexing the
    old in-memory tensor gave); ``workers>0`` decodes ahead in that many processes."""
    items: list[Item] = list(zip(plan, seeds or [None] * len(plan), strict=True))
    dataset = SplitBatches(split, augment)
    if workers <= 0 and not pin_memory:
        for item in items:
            yield dataset[item]
        return
    loader = DataLoader(
        dataset,
        batch_size=None,  # an item is already a batch
        sampler=items,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_start_worker if workers > 0 else None,
        # a private generator: the loader's worker seeds never draw from the global RNG, so
        # dropout and everything else seeded globally is the same with and without workers
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if workers > 0 else None,
    )
    yield from started(loader)


def started(loader: DataLoader[Batch]) -> Iterator[Batch]:
    """Iterate ``loader``, its worker processes forked with this process's objects frozen.

    A forked worker shares the parent's pages copy-on-write, but its cyclic garbage collector
    writes to every container object it visits, so a full collection would copy the parent's
    whole Python heap (the data set's per-file records included) into each worker.
    ``gc.freeze()`` moves the objects that exist now to a permanent generation that the
    workers' collector never visits; the parent unfreezes right after the fork."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        batches = iter(loader)  # the workers start here
    finally:
        if frozen_before == 0:
            gc.unfreeze()
    yield from batches


def in_order(n: int, batch_size: int) -> list[torch.Tensor]:
    """Positions 0..n-1 cut into batches of ``batch_size`` (the evaluation order)."""
    return list(torch.arange(n).split(batch_size))


def split_inputs(
    split: ArraySplit, batch_size: int = 256, workers: int = 0, pin_memory: bool = False
) -> Iterator[torch.Tensor]:
    """The split's model inputs in order, a batch at a time (evaluation, no augmentation)."""
    for x, _, _ in iterate_batches(
        split, in_order(len(split), batch_size), workers=workers, pin_memory=pin_memory
    ):
        yield x
