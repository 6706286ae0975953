"""CPU threads: one helper decides and applies them, so no command oversubscribes a machine.

torch's default (one intra-op thread per core it sees, plus OpenMP/BLAS pools of their own) is
right for a machine a job has to itself and badly wrong on a shared one: a training run on
digits was measured 20x slower under load. Every heavy command takes ``--threads N`` and calls
``apply_threads`` once; worker processes (local pool, Ray tasks, the service's retrain child)
call ``pin_worker_threads`` to use one thread unless told otherwise.

The default is the number of cores this process may run on (``os.sched_getaffinity``), capped
by ``UNLEARNKIT_MAX_THREADS`` when that is set.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from unlearnkit.errors import UnlearnkitError

MAX_THREADS_ENV = "UNLEARNKIT_MAX_THREADS"
_limits: Any = None  # the threadpoolctl limiter in force (kept alive on purpose)


def available_cores() -> int:
    """Cores this process may use (its CPU affinity), not the cores the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """The affinity's core count, capped by ``UNLEARNKIT_MAX_THREADS`` if set."""
    cores = available_cores()
    cap = os.environ.get(MAX_THREADS_ENV)
    if cap is None:
        return cores
    try:
        value = int(cap)
    except ValueError:
        raise UnlearnkitError(f"{MAX_THREADS_ENV}={cap!r} must be a positive integer") from None
    if value < 1:
        raise UnlearnkitError(f"{MAX_THREADS_ENV}={cap!r} must be a positive integer")
    return min(cores, value)


def resolve_threads(threads: int | None) -> int:
    """``None`` means the default; anything else must be a positive count."""
    if threads is None:
        return default_threads()
    if threads < 1:
        raise UnlearnkitError(f"--threads {threads}: must be at least 1")
    return int(threads)


def apply_threads(threads: int | None = None) -> int:
    """Set torch's intra-op and inter-op threads and the BLAS/OpenMP pools; returns the count.

    torch only accepts an inter-op count before its first parallel work; later calls keep the
    one already set (it matters little on CPU: intra-op threads do the heavy lifting).
    """
    global _limits
    n = resolve_threads(threads)
    torch.set_num_threads(n)
    # torch refuses a new inter-op count after its first parallel work: keep the one set then
    with suppress(RuntimeError):
        torch.set_num_interop_threads(n)
    _limits = threadpool_limits(limits=n)
    return n


def configure(threads: int | None = None) -> int:
    """The Python API's ``--threads``: apply the CLI's thread policy; returns the count.

    Call it once before heavy work (``None``: the cores this process may use, capped by
    ``UNLEARNKIT_MAX_THREADS``). Importing unlearnkit before torch also makes idle OpenMP threads
    sleep; when torch was imported first that cannot be changed any more, and this warns.
    """
    if os.environ.get("OMP_WAIT_POLICY") is None:
        warnings.warn(
            "torch was imported before unlearnkit, so OpenMP threads spin while idle (up to "
            "4x slower beside other jobs): import unlearnkit first or set OMP_WAIT_POLICY=PASSIVE",
            RuntimeWarning,
            stacklevel=2,
        )
    return apply_threads(threads)


def pin_worker_threads(threads: int = 1) -> int:
    """What a worker process (pool, Ray task, retrain child) calls first: one thread by default."""
    return apply_threads(threads)


@contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def thread_report() -> dict[str, Any]:
    """What a results file records so a figure can be judged: threads used and machine load."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "torch_threads": torch.get_num_threads(),
        "cores_available": available_cores(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": load,
    }
