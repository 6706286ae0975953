"""Where independent jobs run: in this process (default) or on a Ray cluster.

One small interface, ``executor.map(fn, items) -> results`` in input order, with ``fn`` a
picklable top-level function of one argument. S3T/SISA shard training and the memorization
estimators' many small models use it; swapping "local" for "ray" changes nothing else.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry

A = TypeVar("A")
R = TypeVar("R")


class Executor(ABC):
    """Runs ``fn(item)`` for every item; results come back in the order of ``items``."""

    name: str = "?"

    @abstractmethod
    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]: ...

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


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """One Ray task per item. ``address=None`` starts a local Ray; else joins that cluster.

    ``num_cpus`` caps a local Ray's CPUs; ``cpus_per_task`` is each task's reservation.
    Workers get this process's ``sys.path`` so in-tree code (PYTHONPATH=src) imports there.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, cpus_per_task: float = 1.0
    ) -> None:
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
        remote = self._ray.remote(num_cpus=self.cpus_per_task)(fn)
        return list(self._ray.get([remote.remote(item) for item in items]))

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
            self._started_here = False


def create_executor(name: str = "local", **options: Any) -> Executor:
    """``create_executor("ray", address="ray://head:10001")``; unknown names list the valid ones."""
    return EXECUTORS.create(name, **options)
