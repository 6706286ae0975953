"""The one-time NTK precompute: A and b of D in shards, on a local process pool or Ray, resumable.

D is cut into contiguous *shards* of whole Jacobian chunks. A shard's partial sums (A_s, b_s)
depend on that shard alone, so shards run anywhere: in this process (``workers=1``), in worker
processes pinned to one thread each (``executor="local"``), or as Ray tasks
(``executor="ray"``, on this machine or a cluster). The parent adds the partials in shard order,
whichever finished first, so the result equals the serial sum to rounding for any number of
workers (bit for bit for the same shard size and thread count).

With a cache directory (``<state file>.parts/`` next to the state) the work survives an
interruption: a shard that finishes out of order is written atomically until its turn, the
in-order prefix sum is checkpointed (every ``checkpoint_s`` seconds but at most a tenth of the
time, and on the way out of an error, Ctrl-C or a time budget), and merged shard files are
removed; a kill -9 loses at most the work since the last checkpoint. A later run with the same
job (w0, parameters, data, kernel, chunk size, dtypes) continues from there; a cache of another
job is discarded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import atomic_save_tensors, atomic_write_text
from unlearnkit.ntk.files import load_tensors
from unlearnkit.ntk.gram import GramStats, accumulate_gram, rhs_columns
from unlearnkit.ntk.jacobian import Kernel, check_kernel
from unlearnkit.ntk.params import ParamSpace, state_hash
from unlearnkit.runtime import create_executor
from unlearnkit.runtime.progress import report
from unlearnkit.training import Inputs

EXECUTORS = ("local", "ray")
CACHE_FORMAT = "unlearnkit-ntk-shards/1"
JOB_FILE = "job.json"
PREFIX_FILE = "prefix.safetensors"
MAX_SHARD_CHUNKS = 32  # a shard's write costs about 20 samples' compute: keep shards large


class PrecomputeIncomplete(UnlearnkitError):
    """The precompute stopped before every shard was summed (``max_shards`` or
    ``time_budget_s``); rerun to resume. ``samples`` is the size of the summed in-order prefix
    and ``elapsed_s`` the time at which that prefix was complete."""

    def __init__(self, message: str, samples: int = 0, elapsed_s: float = 0.0) -> None:
        super().__init__(message)
        self.samples = samples
        self.elapsed_s = elapsed_s


@dataclass(frozen=True)
class GramJob:
    """What every shard needs: pickled once per worker process (or with each Ray task)."""

    model: nn.Module
    names: tuple[str, ...]
    w0: dict[str, torch.Tensor]
    num_classes: int
    chunk_size: int
    kernel: Kernel
    dtype: torch.dtype
    product_dtype: torch.dtype | None
    target_scale: float | None = None  # None: one-hot targets; s: s (onehot - 1/C)


def shard_stats(job: GramJob, x: Inputs, y: torch.Tensor, on_chunk: Any = None) -> GramStats:
    """The partial sums of one shard (in the calling process, on its threads). ``x``: the
    shard's inputs or a view of its rows (a pickled view carries those rows only)."""
    space = ParamSpace.from_model(job.model, list(job.names))
    return accumulate_gram(
        job.model,
        space,
        x,
        y,
        job.num_classes,
        job.w0,
        job.chunk_size,
        job.dtype,
        kernel=job.kernel,
        on_chunk=on_chunk,
        product_dtype=job.product_dtype,
        target_scale=job.target_scale,
    )


# -- where shards run ------------------------------------------------------------------------------
Item = tuple[int, Inputs, torch.Tensor]


def _shard_task(job: GramJob, item: Item) -> GramStats:
    _, x, y = item
    return shard_stats(job, x, y)


def run_shards(
    job: GramJob,
    items: list[Item],
    workers: int,
    executor: str,
    threads_per_worker: int = 1,
    ray_address: str | None = None,
    on_chunk: Any = None,
) -> Iterator[tuple[int, GramStats]]:
    """Yield (shard index, partial sums) as shards finish (any order). Worker processes and Ray
    tasks receive the job (model and w0) once, not with every shard."""
    if not items:
        return
    if executor == "local" and workers == 1:  # in this process, on the caller's threads
        for index, x, y in items:
            yield index, shard_stats(job, x, y, on_chunk)
        return
    options: dict[str, Any] = {"threads_per_worker": threads_per_worker}
    if executor == "local":
        name, options["workers"] = "processes", workers
    else:
        name, options["address"] = "ray", ray_address
        if ray_address is None:
            options["num_cpus"] = workers
    with create_executor(name, **options) as pool:
        for position, part in pool.map_unordered(_shard_task, job, items):
            yield items[position][0], part


# -- the cache of finished shards ------------------------------------------------------------------
def cache_dir_for(state_path: str | Path) -> Path:
    """Where the shards of the state at ``state_path`` are kept while it is being made."""
    path = Path(state_path)
    return path.with_name(path.name + ".parts")


def job_key(job: GramJob, data: ArraySplit, data_fingerprint: str | None = None) -> dict[str, Any]:
    """Everything the partial sums depend on (but not lambda: A and b do not)."""
    return {
        "format": CACHE_FORMAT,
        "w0": state_hash(job.w0),
        "params": state_hash({n: torch.zeros(0) for n in job.names}),
        "data": data_fingerprint or data.fingerprint(),
        "samples": len(data),
        "num_classes": job.num_classes,
        "kernel": job.kernel,
        "chunk_size": job.chunk_size,
        "dtype": str(job.dtype),
        "product_dtype": str(job.product_dtype),
        "target_scale": job.target_scale,
    }


class ShardCache:
    """Finished shards and the checkpointed in-order prefix sum of one precompute job."""

    def __init__(self, directory: Path, key: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.key = key

    def open(self, shard_size: int) -> int:
        """The shard size to use: that of a cache of the same job, else ``shard_size`` (a cache
        of another job is discarded)."""
        job_file = self.directory / JOB_FILE
        if job_file.is_file():
            try:
                saved = json.loads(job_file.read_text())
                if saved.get("key") == self.key:
                    return int(saved["shard_size"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
            self.clear()
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job_file, json.dumps({"key": self.key, "shard_size": shard_size}))
        return shard_size

    def shard_path(self, index: int) -> Path:
        return self.directory / f"shard-{index:06d}.safetensors"

    def save_shard(self, index: int, stats: GramStats) -> None:
        meta = {"index": str(index), "count": str(stats.count)}
        atomic_save_tensors(self.shard_path(index), {"gram": stats.gram, "rhs": stats.rhs}, meta)

    def _read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        try:
            return load_tensors(path)
        except (SafetensorError, OSError, RuntimeError):
            return None  # torn or foreign file: recompute that part

    def load_shard(self, index: int) -> GramStats:
        read = self._read(self.shard_path(index))
        if read is None:
            raise UnlearnkitError(f"cached NTK shard {self.shard_path(index)} is unreadable")
        tensors, meta = read
        return GramStats(tensors["gram"], tensors["rhs"], int(meta["count"]))

    def finished(self, start: int, total: int) -> set[int]:
        """Shard files with index in [start, total) and a readable header (files are renamed
        into place whole, so a header that parses means a complete file); others are removed."""
        found = set()
        for path in self.directory.glob("shard-*.safetensors"):
            try:
                index = int(path.stem.split("-")[1])
                with safe_open(str(path), framework="pt") as fh:
                    ok = (fh.metadata() or {}).get("index") == str(index)
            except (IndexError, ValueError, SafetensorError, OSError, RuntimeError):
                ok, index = False, -1
            if ok and start <= index < total:
                found.add(index)
            else:
                path.unlink(missing_ok=True)
        return found

    def load_prefix(self) -> tuple[int, GramStats] | None:
        read = self._read(self.directory / PREFIX_FILE)
        if read is None:
            return None
        tensors, meta = read
        stats = GramStats(tensors["gram"], tensors["rhs"], int(meta["count"]))
        return int(meta["next"]), stats

    def save_prefix(self, next_index: int, stats: GramStats) -> None:
        meta = {"next": str(next_index), "count": str(stats.count)}
        atomic_save_tensors(
            self.directory / PREFIX_FILE, {"gram": stats.gram, "rhs": stats.rhs}, meta
        )
        for index in range(next_index):
            self.shard_path(index).unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove this cache's files (only ours) and the directory if it is then empty."""
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.name in (JOB_FILE, PREFIX_FILE) or path.name.startswith(("shard-", ".")):
                path.unlink(missing_ok=True)
        with suppress(OSError):  # not empty: someone else's files are in there
            self.directory.rmdir()


def remove_cache(directory: str | Path) -> None:
    ShardCache(Path(directory), {}).clear()


# -- the precompute --------------------------------------------------------------------------------
def check_options(kernel: str, executor: str, workers: int = 1, threads: int = 1) -> None:
    """Refuse an unknown kernel or executor, or a worker / thread count below 1, before work."""
    check_kernel(kernel)
    if executor not in EXECUTORS:
        raise UnlearnkitError(f"unknown executor {executor!r}; choose one of: local, ray")
    if workers < 1 or threads < 1:
        raise UnlearnkitError(f"workers and threads must be >= 1, got {workers} and {threads}")


def default_shard_size(samples: int, chunk_size: int, workers: int) -> int:
    """About four shards per worker, whole chunks, at most ``MAX_SHARD_CHUNKS`` chunks."""
    per_shard = -(-samples // max(1, 4 * workers))
    chunks = min(MAX_SHARD_CHUNKS, max(1, -(-per_shard // chunk_size)))
    return chunks * chunk_size


def compute_gram(
    model: nn.Module,
    names: list[str],
    w0: Mapping[str, torch.Tensor],
    data: ArraySplit,
    num_classes: int,
    *,
    kernel: Kernel = "exact",
    chunk_size: int = 64,
    shard_size: int | None = None,
    workers: int = 1,
    executor: str = "local",
    threads_per_worker: int = 1,
    ray_address: str | None = None,
    cache_dir: str | Path | None = None,
    data_fingerprint: str | None = None,
    max_shards: int | None = None,
    time_budget_s: float | None = None,
    checkpoint_s: float = 30.0,
    dtype: torch.dtype = torch.float64,
    product_dtype: torch.dtype | None = None,
    progress: bool = False,
    target_scale: float | None = None,
) -> GramStats:
    """A = sum J^T J and b = sum J^T r over ``data`` at ``w0``, shard by shard (module doc).

    ``max_shards`` computes at most that many new shards in this call and then raises
    ``PrecomputeIncomplete`` (what an interruption looks like; the cache keeps the work).
    ``time_budget_s`` does the same once that many seconds have passed: the in-order prefix of
    shards finished within the budget is summed (and checkpointed with a cache); a shard that
    finishes later is kept in the cache for the resume but not summed. Shards already running
    on a local pool are waited for (at most one shard's time per worker)."""
    check_options(kernel, executor, workers, threads_per_worker)
    if chunk_size < 1 or (shard_size is not None and shard_size < 1):
        raise UnlearnkitError("chunk_size and shard_size must be >= 1")
    space = ParamSpace.from_model(model, names)
    job = GramJob(
        model,
        space.names,
        {k: v.detach() for k, v in w0.items()},
        num_classes,
        chunk_size,
        kernel,
        dtype,
        product_dtype,
        target_scale,
    )
    n = len(data)
    serial = executor == "local" and workers == 1
    if shard_size is None and serial and cache_dir is None and time_budget_s is None:
        shard_size = max(n, 1)  # nothing to resume or to spread: one shard, one accumulator
    size = shard_size or default_shard_size(n, chunk_size, workers)
    cache = None
    if cache_dir is not None:
        cache = ShardCache(Path(cache_dir), job_key(job, data, data_fingerprint))
        size = cache.open(size)
    bounds = [(s, min(s + size, n)) for s in range(0, n, size)]
    cols = rhs_columns(kernel, num_classes)
    total: GramStats | None = None  # the first shard's sums become the total (no copy)
    next_index = 0
    prefix = cache.load_prefix() if cache is not None else None
    if prefix is not None and prefix[1].gram.shape == (space.numel, space.numel):
        next_index, total = prefix
    on_disk = cache.finished(next_index, len(bounds)) if cache is not None else set()
    todo = [i for i in range(next_index, len(bounds)) if i not in on_disk]
    if max_shards is not None:
        todo = todo[:max_shards]
    in_memory: dict[int, GramStats] = {}
    done = (total.count if total else 0) + sum(bounds[i][1] - bounds[i][0] for i in on_disk)
    what = f"ntk precompute ({kernel}, {workers} x {executor})"
    counted = [done]

    def advance(samples: int) -> None:
        counted[0] += samples
        if progress:
            report(what, counted[0], n)

    started = time.monotonic()
    saved = {"next": next_index, "at": started, "cost": 0.0}
    prefix_done_s = 0.0

    def merge() -> None:
        nonlocal next_index, total, prefix_done_s
        start_index = next_index
        while next_index in in_memory or next_index in on_disk:
            if next_index in in_memory:
                part = in_memory.pop(next_index)
            else:
                assert cache is not None
                part = cache.load_shard(next_index)
            if total is None:
                total = part
            else:
                total.gram.add_(part.gram)
                total.rhs.add_(part.rhs)
                total.count += part.count
            next_index += 1
        if next_index != start_index:
            prefix_done_s = time.monotonic() - started

    def checkpoint(force: bool) -> None:
        """Write the prefix sum every ``checkpoint_s`` seconds, but at most a tenth of the time
        (a P x P prefix is a large file: 1.7 GB at P = 14,730)."""
        if cache is None or total is None or next_index == saved["next"]:
            return
        wait = max(checkpoint_s, 10.0 * saved["cost"])
        if force or time.monotonic() - saved["at"] >= wait:
            began = time.monotonic()
            cache.save_prefix(next_index, total)
            on_disk.difference_update(range(next_index))
            saved.update(next=next_index, at=time.monotonic(), cost=time.monotonic() - began)

    items = [  # each shard a view of its rows: inputs loaded a chunk at a time where it runs
        (i, data.subset(torch.arange(*bounds[i])), data.y[bounds[i][0] : bounds[i][1]])
        for i in todo
    ]
    try:
        merge()
        for index, part in run_shards(
            job,
            items,
            workers,
            executor,
            threads_per_worker,
            ray_address,
            on_chunk=advance if serial else None,
        ):
            if not serial:
                advance(part.count)
            late = time_budget_s is not None and time.monotonic() - started > time_budget_s
            if late:
                if cache is not None:
                    cache.save_shard(index, part)  # for the resume, not for this prefix
                break
            if cache is not None and index != next_index:
                cache.save_shard(index, part)  # out of order: on disk until its turn
                on_disk.add(index)
            else:  # in order: summed now, on disk with the next prefix checkpoint
                in_memory[index] = part
            merge()
            checkpoint(False)
    finally:
        checkpoint(True)  # keep everything finished so far, also on an error or Ctrl-C
    if next_index < len(bounds):
        summed = total.count if total else 0
        raise PrecomputeIncomplete(
            f"NTK precompute stopped after {next_index} of {len(bounds)} shards "
            f"({summed} of {n} samples)"
            + (f"; run it again to resume from {cache.directory}" if cache is not None else ""),
            summed,
            prefix_done_s,
        )
    if total is None:  # no samples at all
        p = space.numel
        rhs = torch.zeros(p if cols is None else (p, cols), dtype=dtype)
        return GramStats(torch.zeros(p, p, dtype=dtype), rhs, 0)
    return total
