"""DataLoader workers return batch-sized blocks to the system (data/worker_heap.py).

Without the pinned mmap threshold, glibc keeps every batch a worker built in its heap: the
control below shows the growth on this platform, so the test can fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from unlearnkit.data.loader import _start_worker
from unlearnkit.data.worker_heap import glibc

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or glibc() is None,
    reason="glibc's malloc on Linux only",
)
MIB = 2**20
ITEMS = 40
SHAPE = (256, 3, 64, 64)  # 12 MiB of float32 per batch, above the mmap threshold


def _private_bytes() -> int:
    """This process's private memory (Private_Clean + Private_Dirty of smaps_rollup)."""
    total = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


class _Batches(Dataset):
    """Builds a batch the way SplitBatches does (uint8 pixels -> new float tensor) and
    reports the worker's private memory as it hands the batch over."""

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = torch.full(SHAPE, i % 256, dtype=torch.uint8)
        x = pixels.to(torch.float32).div_(255.0)
        return x, _private_bytes()


def _growth(init) -> float:
    loader = DataLoader(_Batches(), batch_size=None, num_workers=1, worker_init_fn=init,
                        prefetch_factor=2)  # fmt: skip
    seen = [int(private) for _, private in loader]
    return (max(seen[ITEMS // 2 :]) - seen[2]) / MIB


def _threads_only(worker_id: int) -> None:
    torch.set_num_threads(1)


def test_worker_private_memory_stays_flat_over_many_batches() -> None:
    pinned = _growth(_start_worker)
    unpinned = _growth(_threads_only)
    # 40 batches of 12 MiB: the unpinned worker keeps a large part of them
    assert unpinned > 100, f"control grew only {unpinned:.0f} MiB: the test would be vacuous"
    assert pinned < 40, f"worker private memory grew {pinned:.0f} MiB over {ITEMS} batches"
