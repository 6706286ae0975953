"""Cost of an unlearning step: wall time, peak extra resident memory, parameters touched."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return 0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Cost:
    time_s: float = 0.0
    peak_mem_mb: float = 0.0


@contextmanager
def measure_cost(interval_s: float = 0.005) -> Iterator[Cost]:
    """Time the block and sample RSS in a thread; ``peak_mem_mb`` is the peak above the start."""
    cost = Cost()
    start_rss = resident_bytes()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], resident_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.time_s = time.perf_counter() - start
        done.set()
        thread.join()
        peak[0] = max(peak[0], resident_bytes())
        cost.peak_mem_mb = (peak[0] - start_rss) / 2**20


def params_touched(before: nn.Module | dict[str, torch.Tensor], after: nn.Module) -> int:
    """Number of scalar parameters whose value differs between two models."""
    ref = before if isinstance(before, dict) else dict(before.named_parameters())
    return int(sum((p.detach() != ref[n].detach()).sum() for n, p in after.named_parameters()))
