"""Where independent jobs run: in this process (default), a pool of local worker processes,
or a Ray cluster.

One small interface, ``executor.map(fn, items) -> results`` in input order, with ``fn`` a
picklable top-level function of one argument. S3T/SISA shard training and the memorization
estimators' many small models use it; swapping "local" for "processes" or "ray" changes nothing
else. ``executor.map_unordered(fn, shared, items)`` yields ``(index, fn(shared, item))`` as items
finish, and ships ``shared`` (a model, say) to each worker once instead of with every item: the
NTK precompute streams its shards through it. Worker processes and Ray tasks pin
``threads_per_worker`` CPU threads (default 1) before running ``fn``, so N workers never ask
for N x cores threads.

Devices: an executor takes the current runtime (``unlearnkit.runtime.device``) when it is
created. On the CPU nothing changes. On CUDA the process pool starts one worker per GPU (each
takes its own ``cuda:i``) and Ray tasks reserve ``gpus_per_task`` GPUs (default 1), so the
training loop inside a worker runs on the parent's device and precision.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry
from unlearnkit.runtime.device import Runtime, current_runtime, install_worker_runtime
from unlearnkit.runtime.lifeline import die_with_parent
from unlearnkit.runtime.threads import available_cores, pin_worker_threads

A = TypeVar("A")
R = TypeVar("R")
S = TypeVar("S")


class Executor(ABC):
    """Runs ``fn(item)`` for every item; results come back in the order of ``items``."""

    name: str = "?"

    @abstractmethod
    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]: ...

    def map_unordered(
        self, fn: Callable[[S, A], R], shared: S, items: Sequence[A]
    ) -> Iterator[tuple[int, R]]:
        """Yield ``(i, fn(shared, items[i]))`` as each finishes (any order). Default: in order,
        in this process."""
        for index, item in enumerate(items):
            yield index, fn(shared, item)

    def close(self) -> None:
        """Release workers (a no-op for the local executor)."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS: Registry[Executor] = Registry("executor")


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Sequential, in this process: deterministic, no start-up cost, easy to debug."""

    name = "local"

    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        return [fn(item) for item in items]


def _check_threads(threads_per_worker: int) -> None:
    if threads_per_worker < 1:
        raise UnlearnkitError(f"threads_per_worker must be >= 1, got {threads_per_worker}")


def _accelerated(runtime: Runtime | None) -> Runtime | None:
    """The runtime workers must install: None on the CPU in float32 (workers stay as today)."""
    runtime = current_runtime() if runtime is None else runtime
    if runtime.is_cpu and runtime.precision == "fp32":
        return None
    return runtime


def call_pinned(job: tuple[Callable[[A], R], A, int] | tuple[Callable[[A], R], A, int, Any]) -> R:
    """Run ``fn(item)`` after pinning this worker's threads (top-level, so it pickles); a
    fourth element is the parent's runtime (a Ray task sees only its own GPU: index 0)."""
    fn, item, threads = job[:3]
    install_worker_runtime(job[3] if len(job) > 3 else None, threads)
    return fn(item)


def _init_worker(threads: int, runtime: Runtime | None, slots: Any) -> None:
    """Pool initializer: die with the process that owns the pool, pin threads and, on a GPU
    runtime, take the next free GPU index."""
    die_with_parent()
    index = slots.get() if slots is not None else 0
    install_worker_runtime(runtime, threads, index)


_SHARED: Any = None  # a pool worker's copy of map_unordered's ``shared`` (set once per worker)


def _init_shared(
    shared: Any, threads: int, runtime: Runtime | None = None, slots: Any = None
) -> None:
    global _SHARED
    _init_worker(threads, runtime, slots)
    _SHARED = shared


def _call_shared(job: tuple[Callable[[Any, A], R], A]) -> R:
    fn, item = job
    return fn(_SHARED, item)


def _call_shared_pinned(
    fn: Callable[[S, A], R], shared: S, item: A, threads: int, runtime: Runtime | None = None
) -> R:
    install_worker_runtime(runtime, threads)
    return fn(shared, item)


@EXECUTORS.register("processes")
class ProcessExecutor(Executor):
    """A pool of ``workers`` local processes (spawned, so no torch state is forked), each pinned
    to ``threads_per_worker`` threads. Default: one worker per core this process may use; on a
    CUDA runtime one worker per GPU, each on its own device."""

    name = "processes"

    def __init__(
        self,
        workers: int | None = None,
        threads_per_worker: int = 1,
        runtime: Runtime | None = None,
    ) -> None:
        _check_threads(threads_per_worker)
        self.runtime = _accelerated(runtime)
        if workers is None:
            gpu = self.runtime is not None and self.runtime.is_cuda
            workers = _gpu_count() if gpu else available_cores()
        self.workers = int(workers)
        if self.workers < 1:
            raise UnlearnkitError(f"workers must be >= 1, got {workers}")
        self.threads_per_worker = threads_per_worker
        self._pool: ProcessPoolExecutor | None = None

    def _initializer(self, workers: int) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """Plain thread pinning on the CPU (as before); the runtime and a queue of GPU indices
        (one per worker) otherwise."""
        if self.runtime is None:
            return pin_worker_threads, (self.threads_per_worker,)
        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for index in range(workers):
            slots.put(index)
        return _init_worker, (self.threads_per_worker, self.runtime, slots)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            initializer, initargs = self._initializer(self.workers)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=initializer,
                initargs=initargs,
            )
        return self._pool

    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        if not items:
            return []
        return list(self._ensure_pool().map(fn, items))

    def map_unordered(
        self, fn: Callable[[S, A], R], shared: S, items: Sequence[A]
    ) -> Iterator[tuple[int, R]]:
        """A pool of its own whose workers receive ``shared`` once, in their initializer."""
        if not items:
            return
        workers = min(self.workers, len(items))
        if self.runtime is None:
            initargs: tuple[Any, ...] = (shared, self.threads_per_worker)
        else:
            initargs = (shared, *self._initializer(workers)[1])
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_shared,
            initargs=initargs,
        ) as pool:
            futures = {pool.submit(_call_shared, (fn, item)): i for i, item in enumerate(items)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """One Ray task per item. ``address=None`` starts a local Ray; else joins that cluster.

    ``num_cpus`` caps a local Ray's CPUs; ``cpus_per_task`` is each task's reservation and
    ``threads_per_worker`` the CPU threads a task pins before it runs (default 1).
    ``gpus_per_task`` (default: 1 on a CUDA runtime, else 0) is each task's GPU reservation;
    Ray then shows the task only its GPU(s) and the task runs on the parent's precision.
    Workers get this process's ``sys.path`` so in-tree code (PYTHONPATH=src) imports there.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
        threads_per_worker: int = 1,
        gpus_per_task: float | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        _check_threads(threads_per_worker)
        self.threads_per_worker = threads_per_worker
        self.runtime = _accelerated(runtime)
        on_gpu = self.runtime is not None and self.runtime.is_cuda
        self.gpus_per_task = float(gpus_per_task if gpus_per_task is not None else int(on_gpu))
        if self.gpus_per_task < 0:
            raise UnlearnkitError(f"gpus_per_task must be >= 0, got {gpus_per_task}")
        try:
            import ray  # deferred: optional extra (distributed)
        except ImportError:
            raise UnlearnkitError("executor 'ray' needs the ray package: pip install ray") from None
        if cpus_per_task <= 0:
            raise UnlearnkitError(f"cpus_per_task must be > 0, got {cpus_per_task}")
        self._ray = ray
        self._started_here = False
        self.cpus_per_task = cpus_per_task
        if not ray.is_initialized():
            path = os.pathsep.join(p for p in sys.path if p)
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "runtime_env": {"env_vars": {"PYTHONPATH": path}},
            }
            if address is None:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UnlearnkitError(f"cannot start or join Ray at {address!r}: {exc}") from None
            self._started_here = True

    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        remote = self._ray.remote(**self._resources())(call_pinned)
        jobs = [remote.remote((fn, item, self.threads_per_worker, self.runtime)) for item in items]
        return list(self._ray.get(jobs))

    def map_unordered(
        self, fn: Callable[[S, A], R], shared: S, items: Sequence[A]
    ) -> Iterator[tuple[int, R]]:
        """``shared`` goes into the object store once; as many tasks as the cluster has CPUs
        for run at a time (a finished one is replaced at once, no waves), and results are
        yielded as tasks finish. The cap keeps large results (an NTK shard's P x P partial
        Gram) from piling up in the object store."""
        if not items:
            return
        ray = self._ray
        remote = ray.remote(**self._resources())(_call_shared_pinned)
        ref = ray.put(shared)
        resources = ray.cluster_resources()
        slots = max(1, int(resources.get("CPU", 1) // self.cpus_per_task))
        if self.gpus_per_task > 0:
            slots = min(slots, max(1, int(resources.get("GPU", 1) // self.gpus_per_task)))
        todo = iter(enumerate(items))
        pending: dict[Any, int] = {}

        def submit() -> None:
            for index, item in todo:
                task = remote.remote(fn, ref, item, self.threads_per_worker, self.runtime)
                pending[task] = index
                if len(pending) >= slots:
                    return

        try:
            submit()
            while pending:
                (task,), _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(task)
                result = ray.get(task)
                submit()  # the next task starts before this result is handed on
                yield index, result
        finally:
            for task in pending:
                ray.cancel(task)

    def _resources(self) -> dict[str, float]:
        """A task's reservation: its CPUs, and its GPUs when the runtime is on CUDA."""
        resources = {"num_cpus": self.cpus_per_task}
        if self.gpus_per_task > 0:
            resources["num_gpus"] = self.gpus_per_task
        return resources

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
            self._started_here = False


def _gpu_count() -> int:
    import torch  # deferred: only a CUDA runtime asks

    return max(torch.cuda.device_count(), 1)


def create_executor(name: str = "local", **options: Any) -> Executor:
    """``create_executor("ray", address="ray://head:10001")``; unknown names list the valid ones."""
    return EXECUTORS.create(name, **options)
