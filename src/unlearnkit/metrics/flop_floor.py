"""FLOP floors measured where the computation runs, and a check that a floor was not beaten.

A floor is "the computation's FLOPs at the best rate this machine runs them". A rate probed on
one square 1024 GEMM is no such thing for a (1,000 x 14,730) x (14,730 x 14,730) float64
product: large GEMMs run faster than the probe, and a resnet18 downdate "beat its floor"
(issue 29). So the rate is measured at the computation's own shapes, dtype and threads:

- ``gemm_rate``: GEMMs of given (m, k, n) shapes (e.g. the Woodbury downdate's);
- ``replayed_rate``: every FLOP-counted op that a function runs (``torch.utils.flop_counter``:
  convolutions, matrix products and their backward), recorded once and timed again alone at
  its own shapes and dtype on fresh random inputs (e.g. a batched Jacobian).

``FlopFloor`` carries its assumptions as text for the results file, and ``check`` flags a
measured time below the floor as an invalid floor rather than as a speed-up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from unlearnkit.runtime import using_threads


@dataclass(frozen=True)
class GemmShape:
    """``count`` products (m x k) @ (k x n)."""

    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n * self.count

    @property
    def label(self) -> str:
        return f"{self.m}x{self.k}x{self.n}" + (f" (x{self.count})" if self.count > 1 else "")


@dataclass(frozen=True)
class MeasuredRate:
    """FLOPs and the best time they took, part by part, on ``threads`` threads."""

    how: str  # "gemm" (given shapes) or "replay" (a function's own ops)
    dtypes: tuple[str, ...]
    threads: int
    device: str
    repeats: int
    flops: float
    seconds: float  # the sum over parts of count x best single time
    parts: tuple[dict[str, Any], ...]  # label, count, flops (all calls), best_s (all calls)

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flops_per_s": self.flops_per_s}


@dataclass(frozen=True)
class FloorCheck:
    measured_s: float
    floor_s: float

    @property
    def valid(self) -> bool:
        """False when the measurement beat the floor: the floor's assumptions do not hold."""
        return self.measured_s >= self.floor_s

    @property
    def multiple(self) -> float:
        return self.measured_s / self.floor_s if self.floor_s > 0 else float("inf")

    @property
    def verdict(self) -> str:
        if self.valid:
            return f"x{self.multiple:.2f} the floor"
        return (
            f"INVALID FLOOR: measured {self.measured_s:.3g} s < floor {self.floor_s:.3g} s "
            "(the floor's assumptions do not hold; do not read it as a bound)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "valid": self.valid,
            "multiple": self.multiple,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class FlopFloor:
    """``flops`` at ``rate``: the time the computation cannot beat if the assumptions hold."""

    what: str
    flops: float
    rate: MeasuredRate
    assumptions: str

    @property
    def seconds(self) -> float:
        return self.flops / self.rate.flops_per_s

    def check(self, measured_s: float) -> FloorCheck:
        return FloorCheck(measured_s, self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "flops": self.flops,
            "floor_s": self.seconds,
            "assumptions": self.assumptions,
            "rate": self.rate.as_dict(),
        }


def _threads(threads: int | None) -> contextlib.AbstractContextManager[None]:
    return using_threads(threads) if threads is not None else contextlib.nullcontext()


def _best_time(call: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Best-of-``repeats`` wall time of ``call`` after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    call()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_rate(
    shapes: Iterable[GemmShape],
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    repeats: int = 3,
    device: str | torch.device = "cpu",
) -> MeasuredRate:
    """The rate of exactly these GEMMs: each shape timed alone (best of ``repeats``, after a
    warm-up) in ``dtype`` on ``threads`` threads (None: the current count), contiguous
    operands, the result written into a preallocated matrix."""
    dev = torch.device(device)
    shapes = list(shapes)
    parts = []
    with _threads(threads):
        used = torch.get_num_threads()
        for s in shapes:
            a = torch.randn(s.m, s.k, dtype=dtype, device=dev)
            b = torch.randn(s.k, s.n, dtype=dtype, device=dev)
            out = torch.empty(s.m, s.n, dtype=dtype, device=dev)
            best = _best_time(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), repeats, dev)
            parts.append(
                {"label": s.label, "count": s.count, "flops": s.flops, "best_s": best * s.count}
            )
            del a, b, out
    return MeasuredRate(
        "gemm",
        (str(dtype).removeprefix("torch."),),
        used,
        str(dev),
        repeats,
        sum(p["flops"] for p in parts),
        sum(p["best_s"] for p in parts),
        tuple(parts),
    )


_CL = torch.channels_last


class _Meta:
    """A tensor argument remembered by shape, dtype and layout (the replay makes a fresh one:
    a channels-last convolution is timed channels-last, its kernels differ)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.shape, self.dtype, self.device = tuple(t.shape), t.dtype, t.device
        self.channels_last = (
            t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=_CL)
        )

    def key(self) -> tuple[Any, ...]:
        return ("T", self.shape, str(self.dtype), self.channels_last)

    def make(self) -> torch.Tensor:
        if self.dtype.is_floating_point:
            t = torch.randn(self.shape, dtype=self.dtype, device=self.device)
        else:
            t = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        return t.contiguous(memory_format=_CL) if self.channels_last else t


class _Recorder(TorchDispatchMode):
    """Counts the FLOP-counted ops a function runs, by op and argument shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[tuple[Any, ...], list[Any]] = {}  # key -> [func, args, kwargs, count]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func.overloadpacket in flop_registry:
            meta_args, meta_kwargs = pytree.tree_map_only(torch.Tensor, _Meta, (args, kwargs))
            leaves = pytree.tree_leaves((meta_args, meta_kwargs))
            key = (str(func), *(v.key() if isinstance(v, _Meta) else repr(v) for v in leaves))
            entry = self.calls.setdefault(key, [func, meta_args, meta_kwargs, 0])
            entry[3] += 1
        return func(*args, **kwargs)


def _materialise(tree: Any) -> Any:
    return pytree.tree_map(lambda v: v.make() if isinstance(v, _Meta) else v, tree)


def recorded_ops(fn: Callable[[], Any]) -> Iterator[tuple[Any, Any, Any, int]]:
    """Run ``fn`` once; the distinct FLOP-counted ops it ran: (op, args, kwargs, times run),
    tensors kept as shapes only."""
    recorder = _Recorder()
    with recorder:
        fn()
    yield from (tuple(v) for v in recorder.calls.values())


def replayed_rate(
    fn: Callable[[], Any], threads: int | None = None, repeats: int = 3
) -> MeasuredRate:
    """The rate of ``fn``'s own FLOP-counted ops: ``fn`` runs once (recorded), then each
    distinct op is timed alone at its shapes and dtype on fresh random inputs (best of
    ``repeats`` after a warm-up), times the number of calls. Work that FlopCounterMode does not
    count (element-wise ops, reductions, copies) is in neither the FLOPs nor the time."""
    parts, dtypes, device = [], set(), "cpu"
    with _threads(threads):
        used = torch.get_num_threads()
        for func, args, kwargs, count in recorded_ops(fn):
            real_args, real_kwargs = _materialise(args), _materialise(kwargs)
            tensors = [
                t
                for t in pytree.tree_leaves((real_args, real_kwargs))
                if isinstance(t, torch.Tensor)
            ]
            dev = tensors[0].device if tensors else torch.device("cpu")
            device = str(dev)
            dtypes.update(str(t.dtype).removeprefix("torch.") for t in tensors)
            with FlopCounterMode(display=False) as counter:
                func(*real_args, **real_kwargs)
            best = _best_time(partial(func, *real_args, **real_kwargs), repeats, dev)
            shapes = ", ".join(str(list(t.shape)) for t in tensors)
            parts.append(
                {
                    "label": f"{func.overloadpacket.__name__}({shapes})",
                    "count": count,
                    "flops": counter.get_total_flops() * count,
                    "best_s": best * count,
                }
            )
    return MeasuredRate(
        "replay",
        tuple(sorted(dtypes)),
        used,
        device,
        repeats,
        float(sum(p["flops"] for p in parts)),
        sum(p["best_s"] for p in parts),
        tuple(parts),
    )


def gemm_assumptions(rate: MeasuredRate, what: str) -> str:
    """The text a results file prints beside a floor measured by ``gemm_rate``."""
    shapes = ", ".join(p["label"] for p in rate.parts)
    return (
        f"{what}: GEMM FLOPs (2 m k n per product) at the rate of those GEMMs measured alone "
        f"in {'/'.join(rate.dtypes)} on {rate.threads} thread(s) ({rate.device}), shapes "
        f"{shapes}, best of {rate.repeats} after a warm-up, contiguous operands; other work "
        "(Cholesky, triangular solves, element-wise) is not in the floor"
    )


def replay_assumptions(rate: MeasuredRate, what: str) -> str:
    """The text a results file prints beside a floor measured by ``replayed_rate``."""
    return (
        f"{what}: the FLOPs torch.utils.flop_counter counts (convolutions, matrix products and "
        f"their backward; not element-wise work, reductions or copies), each of the "
        f"{len(rate.parts)} distinct ops timed alone at its own shapes in "
        f"{'/'.join(rate.dtypes)} on {rate.threads} thread(s) ({rate.device}), best of "
        f"{rate.repeats} after a warm-up, on fresh random inputs"
    )


def counted_floor(
    fn: Callable[[], Any], what: str, threads: int | None = None, repeats: int = 3
) -> FlopFloor:
    """The floor of ``fn`` as it runs: the FLOPs ``torch.utils.flop_counter`` counts in one
    call, at ``replayed_rate`` of the same ops (each timed alone at its own shapes). E.g. one
    packed ensemble prediction: the trunk once plus every served shard's adapted part."""
    with _threads(threads), FlopCounterMode(display=False) as counter:
        fn()
    rate = replayed_rate(fn, threads, repeats)
    return FlopFloor(what, float(counter.get_total_flops()), rate, replay_assumptions(rate, what))
