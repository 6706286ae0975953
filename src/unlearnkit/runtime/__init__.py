"""Where work runs (in-process or on a Ray cluster, behind one ``map``) and on how many threads."""

from unlearnkit.runtime.executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    create_executor,
)
from unlearnkit.runtime.threads import (
    apply_threads,
    configure,
    default_threads,
    pin_worker_threads,
    thread_report,
    using_threads,
)

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "apply_threads",
    "configure",
    "create_executor",
    "default_threads",
    "pin_worker_threads",
    "thread_report",
    "using_threads",
]
