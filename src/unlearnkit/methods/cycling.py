"""An endless, seeded stream of batches from a second split (e.g. forget batches paired with
retain batches), so two-set losses fit the one training loop. Inputs and labels are on the
current runtime's device, as the loop's own batches are."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.runtime.device import current_runtime
from unlearnkit.training import Batch, batch_indices


def cycle_batches(split: ArraySplit, batch_size: int, seed: int) -> Iterator[Batch]:
    generator = torch.Generator().manual_seed(seed + 7)
    while True:
        for index in batch_indices(len(split), batch_size, generator):
            x, y = current_runtime().batch(split.samples.load(index), split.y[index])
            yield x, y, split.ids[index]
