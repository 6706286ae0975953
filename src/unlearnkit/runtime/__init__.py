"""Where work runs: in-process (default) or on a Ray cluster, behind one ``map`` interface."""

from unlearnkit.runtime.executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    RayExecutor,
    create_executor,
)

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "create_executor"]
