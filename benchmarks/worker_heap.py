"""A DataLoader worker's private memory over many batches, with and without the pinned glibc
mmap threshold (src/unlearnkit/data/worker_heap.py), side by side in one run.

Each item builds a float32 batch the way ``SplitBatches`` does (uint8 pixels -> a new float
tensor); the worker's USS (private pages, ``proc_memory.py``) is sampled while it runs. Memory
only: valid on a loaded machine.

    python benchmarks/worker_heap.py          # -> results/data_scale/worker_heap.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from proc_memory import MemoryWatch

from unlearnkit.data.loader import _start_worker
from unlearnkit.models.checkpoint import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


class Batches(Dataset):
    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        pixels = torch.full(self.shape, i % 256, dtype=torch.uint8)
        return pixels.to(torch.float32).div_(255.0)


def _threads_only(worker_id: int) -> None:
    torch.set_num_threads(1)


def measure(init, batches: int, shape: tuple[int, ...], workers: int) -> dict[str, float]:
    watch = MemoryWatch(os.getpid())
    watch.start()
    loader = DataLoader(Batches(batches, shape), batch_size=None, num_workers=workers,
                        worker_init_fn=init, prefetch_factor=4)  # fmt: skip
    start = time.perf_counter()
    for _ in loader:
        pass
    wall = time.perf_counter() - start
    time.sleep(0.5)
    peaks = watch.peaks()
    return {
        "largest_worker_uss_mb": peaks.get("worker_uss", 0.0),
        "workers_uss_sum_mb": peaks.get("workers_uss_sum", 0.0),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "results" / "data_scale" / "worker_heap.json"
    )
    args = ap.parse_args()
    shape = (256, 3, 96, 96)  # one batch: 27 MiB of float32 (data_scale.py's 96 px batches)
    rows = []
    for n in args.batches:
        for name, init in (("pinned", _start_worker), ("glibc default", _threads_only)):
            rows.append(
                {"batches": n, "worker_heap": name, **measure(init, n, shape, args.workers)}
            )
            print(json.dumps(rows[-1]), flush=True)
    res = {"what": __doc__.splitlines()[0], "batch_shape": list(shape), "workers": args.workers,
           "torch": torch.__version__, "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
           "load_average": list(os.getloadavg()), "rows": rows}  # fmt: skip
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
