"""The one runtime object: which device a command runs on, in which precision, on how many threads.

As Lightning Fabric's accelerator does, one ``Runtime`` is created per command (from ``--device``,
``--precision``, ``--threads`` or the config's fields) and made current; code then asks it to
move modules and batches (``runtime.module``, ``runtime.batch``, ``runtime.placed``) and to wrap
forward passes (``runtime.autocast``), instead of carrying ``device=`` arguments around. Results
come back to the CPU (``runtime.to_cpu``).

The default runtime is the CPU in float32, where every move is a no-op and no autocast region
is entered: CPU behaviour (bit-identity of S3T/SISA, same seed -> same weights) is unchanged.
On CUDA, ``deterministic=True`` turns on deterministic algorithms (cuBLAS workspace, cuDNN):
S3T/SISA need it for their exactness promise there (docs/devices.md states what holds).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.runtime.threads import apply_threads

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for reproducible GEMMs (CUDA docs)

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


def check_device_name(name: str) -> str:
    """The spelling only (no hardware asked): ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    value = str(name).strip().lower()
    if not _DEVICE.match(value):
        raise UnlearnkitError(f"unknown device {name!r}: use {DEVICE_HELP}")
    return value


def check_precision(device: str, precision: str) -> None:
    """fp16 autocast is for accelerators: on the CPU it is refused (use bf16 there)."""
    if precision not in PRECISIONS:
        raise UnlearnkitError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
    if precision == "fp16" and device == "cpu":
        raise UnlearnkitError(
            "precision fp16 needs a GPU (cuda or mps); on the CPU use bf16 or fp32"
        )


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The device ``name`` stands for on this machine; a device that is not here is refused."""
    value = check_device_name(name)
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnlearnkitError(f"--device {value}: CUDA is not available on this machine")
        index = int(value.partition(":")[2] or torch.cuda.current_device())
        count = torch.cuda.device_count()
        if index >= count:
            raise UnlearnkitError(f"--device {value}: this machine has {count} CUDA device(s)")
        return torch.device("cuda", index)
    if value == "mps" and not _mps_available():
        raise UnlearnkitError("--device mps: Apple's MPS backend is not available on this machine")
    return torch.device(value)


class RuntimeConfig(BaseModel):
    """The two config fields every heavy command shares (``device``, ``precision``); a bad
    spelling fails validation naming the field, a device absent from the machine fails when the
    command creates its runtime (a saved config stays loadable on another machine)."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field("auto", description=DEVICE_HELP + " (auto: CUDA when present)")
    precision: Precision = Field("fp32", description="autocast precision: fp32 | bf16 | fp16")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_name(v)

    @model_validator(mode="after")
    def _combination(self) -> RuntimeConfig:
        check_precision(self.device, self.precision)
        return self


@dataclass(frozen=True)
class Runtime:
    """Device, precision and threads of one command. Create with :meth:`create`, then
    :meth:`activate` it (or ``with using_runtime(rt):``) so the training loop, predictions, the
    NTK and the executors pick it up."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    threads: int | None = None
    deterministic: bool = False
    # DataLoader worker processes that decode batches for training and bulk predictions
    # (--workers; 0: the main process decodes)
    workers: int = 0

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        device: str | None = "auto",
        precision: str | None = "fp32",
        threads: int | None = None,
        deterministic: bool = False,
        workers: int = 0,
    ) -> Runtime:
        """Validate and resolve; every mistake is an ``UnlearnkitError`` (one line, exit 2)."""
        dev = resolve_device("auto" if device is None else device)
        prec = "fp32" if precision is None else precision
        check_precision(dev.type, prec)
        if workers < 0:
            raise UnlearnkitError(f"workers must be >= 0, got {workers}")
        return cls(dev, prec, threads, deterministic, workers)

    @classmethod
    def from_config(
        cls, config: RuntimeConfig, threads: int | None = None, deterministic: bool = False
    ) -> Runtime:
        return cls.create(config.device, config.precision, threads, deterministic)

    def activate(self) -> Runtime:
        """Apply threads and determinism to this process and make this the current runtime;
        returns it with ``threads`` resolved to the count applied."""
        global _current
        active = replace(self, threads=apply_threads(self.threads))
        if active.deterministic and active.is_cuda:
            enable_deterministic()
        _current = active
        return active

    def for_worker(self, index: int) -> Runtime:
        """The runtime of worker ``index`` of a pool: one GPU each, round-robin over the GPUs."""
        if not self.is_cuda:
            return self
        count = max(torch.cuda.device_count(), 1)
        return replace(self, device=torch.device("cuda", index % count))

    # -- what the hot paths ask ---------------------------------------------------------------
    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    def module(self, model: M) -> M:
        """Move ``model`` to the device in place (parameters keep their identity)."""
        return model if self._on_device(model) else model.to(self.device)

    def batch(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tensors on the device (a no-op on the CPU; pinned host memory copies async)."""
        if self.is_cpu:
            return tensors
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)

    def tensor(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.is_cpu else value.to(self.device, non_blocking=True)

    @staticmethod
    def to_cpu(value: torch.Tensor) -> torch.Tensor:
        """Results come back to the CPU in float32 at least (autocast may give half floats)."""
        value = value.cpu()
        if value.is_floating_point() and value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        return value

    @contextmanager
    def placed(self, model: M) -> Iterator[M]:
        """``model`` on the device for the block, back where it was afterwards (a no-op when it
        is there already, so nested uses cost nothing)."""
        first = next(model.parameters(), None)
        home = first.device if first is not None else self.device
        if home == self.device or first is None:
            yield model
            return
        model.to(self.device)
        try:
            yield model
        finally:
            model.to(home)

    def autocast(self) -> Any:
        """The forward pass's precision region (``nullcontext`` in fp32: nothing changes)."""
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 training needs loss scaling (gradients underflow otherwise); None elsewhere."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def free_memory(self) -> int | None:
        """Free bytes on the accelerator (None on the CPU: the caller reads host memory)."""
        if self.is_cuda:
            free, _total = torch.cuda.mem_get_info(self.device)
            return int(free)
        return None

    def synchronize(self) -> None:
        """Wait for queued device work (timings on a GPU need it)."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def describe(self) -> dict[str, Any]:
        """What a results file records next to a figure."""
        out: dict[str, Any] = {
            "device": str(self.device),
            "precision": self.precision,
            "deterministic": self.deterministic,
        }
        if self.is_cuda:
            out["gpu"] = torch.cuda.get_device_name(self.device)
        return out

    def _on_device(self, model: nn.Module) -> bool:
        first = next(model.parameters(), None)
        return first is None or first.device == self.device


def enable_deterministic() -> None:
    """Deterministic CUDA kernels: cuBLAS's fixed workspace (read when cuBLAS starts, and by
    spawned workers from the environment), ``use_deterministic_algorithms`` and cuDNN without
    autotuning. ``warn_only``: an op with no deterministic CUDA kernel (e.g. the backward of
    ``AdaptiveAvgPool2d``, in smallcnn and ResNets) warns, naming itself, instead of stopping
    the run; bit-exactness on the GPU is then checked by tests/gpu, not promised by torch."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


_current = Runtime()  # the CPU in float32 until a command activates another


def current_runtime() -> Runtime:
    """The runtime this process runs under (the CPU in float32 unless a command chose)."""
    return _current


@contextmanager
def using_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Make ``runtime`` current for a block (threads and determinism are left as they are)."""
    global _current
    before = _current
    _current = runtime
    try:
        yield runtime
    finally:
        _current = before


def install_worker_runtime(runtime: Runtime | None, threads: int, index: int = 0) -> None:
    """What a worker process (pool, Ray task, retrain child) does first: pin its threads and,
    when the parent ran on an accelerator, take its own device (one GPU per worker)."""
    global _current
    apply_threads(threads)
    if runtime is None:
        return
    # a worker decodes its own batches: pool workers are daemonic and cannot start DataLoader
    # workers of their own
    mine = replace(runtime.for_worker(index), threads=threads, workers=0)
    if mine.deterministic and mine.is_cuda:
        enable_deterministic()
    if mine.is_cuda:
        torch.cuda.set_device(mine.device)
    _current = mine
