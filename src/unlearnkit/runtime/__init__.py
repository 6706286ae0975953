"""Where work runs: the runtime object (device, precision, threads), and the executors that run
independent jobs in-process, in worker processes or on a Ray cluster behind one ``map``."""

from unlearnkit.runtime.device import (
    PRECISIONS,
    Runtime,
    RuntimeConfig,
    current_runtime,
    resolve_device,
    using_runtime,
)
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
    "PRECISIONS",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "Runtime",
    "RuntimeConfig",
    "apply_threads",
    "configure",
    "create_executor",
    "current_runtime",
    "default_threads",
    "pin_worker_threads",
    "resolve_device",
    "thread_report",
    "using_runtime",
    "using_threads",
]
