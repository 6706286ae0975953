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


def call_pinned(job: tuple[Callable[[A], R], A, int]) -> R:
    """Run ``fn(item)`` after pinning this worker's threads (top-level, so it pickles)."""
    fn, item, threads = job
    pin_worker_threads(threads)
    return fn(item)


_SHARED: Any = None  # a pool worker's copy of map_unordered's ``shared`` (set once per worker)


def _init_shared(shared: Any, threads: int) -> None:
    global _SHARED
    _init_worker(threads)
    _SHARED = shared


def _init_worker(threads: int) -> None:
    """Each pool worker: dies with the process that owns the pool, few threads."""
    die_with_parent()
    pin_worker_threads(threads)


def _call_shared(job: tuple[Callable[[Any, A], R], A]) -> R:
    fn, item = job
    return fn(_SHARED, item)


def _call_shared_pinned(fn: Callable[[S, A], R], shared: S, item: A, threads: int) -> R:
    pin_worker_threads(threads)
    return fn(shared, item)


@EXECUTORS.register("processes")
class ProcessExecutor(Executor):
    """A pool of ``workers`` local processes (spawned, so no torch state is forked), each pinned
    to ``threads_per_worker`` threads. Default: one worker per core this process may use."""

    name = "processes"

    def __init__(self, workers: int | None = None, threads_per_worker: int = 1) -> None:
        _check_threads(threads_per_worker)
        self.workers = available_cores() if workers is None else int(workers)
        if self.workers < 1:
            raise UnlearnkitError(f"workers must be >= 1, got {workers}")
        self.threads_per_worker = threads_per_worker
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads_per_worker,),
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
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(items)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_shared,
            initargs=(shared, self.threads_per_worker),
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
    Workers get this process's ``sys.path`` so in-tree code (PYTHONPATH=src) imports there.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
        threads_per_worker: int = 1,
    ) -> None:
        _check_threads(threads_per_worker)
        self.threads_per_worker = threads_per_worker
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
        remote = self._ray.remote(num_cpus=self.cpus_per_task)(call_pinned)
        jobs = [remote.remote((fn, item, self.threads_per_worker)) for item in items]
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
        remote = ray.remote(num_cpus=self.cpus_per_task)(_call_shared_pinned)
        ref = ray.put(shared)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_task))
        todo = iter(enumerate(items))
        pending: dict[Any, int] = {}

        def submit() -> None:
            for index, item in todo:
                pending[remote.remote(fn, ref, item, self.threads_per_worker)] = index
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

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
            self._started_here = False


def create_executor(name: str = "local", **options: Any) -> Executor:
    """``create_executor("ray", address="ray://head:10001")``; unknown names list the valid ones."""
    return EXECUTORS.create(name, **options)
