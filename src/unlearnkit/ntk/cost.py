"""A cost model of the NTK precompute: FLOPs per sample, and the time they take at the machine's
measured dense GEMM rate, so a measured time per sample reads as a multiple of that limit.

Per sample of D:
- the model part: one forward pass and C reverse passes through the activations (one for the
  pseudo-NTK), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the batched Jacobian
  itself (convolutions, matrix products and their backward; element-wise work is not counted);
- the Gram update: A is symmetric, so its upper triangle suffices: C P (P + 1) / 2
  multiply-adds, i.e. C P (P + 1) ~ C P^2 FLOPs (P (P + 1) for the pNTK's single row).

The limit divides the sum by the float32 GEMM rate measured on this process's threads: the
Gram update is a GEMM and the convolutions run at a similar rate at best.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unlearnkit.metrics.flop_floor import FloorCheck
from unlearnkit.ntk.jacobian import Kernel, batched_jacobian
from unlearnkit.ntk.params import ParamSpace


@dataclass(frozen=True)
class PrecomputeCost:
    p: int
    num_classes: int
    kernel: str
    model_flops: float  # per sample: forward + reverse passes (FlopCounterMode)
    gram_flops: float  # per sample: C P (P + 1), the upper triangle (P (P + 1) for the pNTK)
    gemm_flops_per_s: float  # measured float32 GEMM rate on ``threads`` threads
    threads: int

    @property
    def flops(self) -> float:
        return self.model_flops + self.gram_flops

    @property
    def limit_s_per_sample(self) -> float:
        """Seconds per sample if every FLOP ran at the measured GEMM rate."""
        return self.flops / self.gemm_flops_per_s

    def multiple(self, seconds_per_sample: float) -> float:
        """A measured time per sample as a multiple of the limit (1.0 = at the machine's rate)."""
        return seconds_per_sample / self.limit_s_per_sample

    def check(self, seconds_per_sample: float) -> FloorCheck:
        """A measured time per sample against the limit: one below it is flagged as an invalid
        floor (the square probe's rate is then not the best rate of this computation)."""
        return FloorCheck(seconds_per_sample, self.limit_s_per_sample)

    @property
    def assumptions(self) -> str:
        return (
            "FLOPs: the batched Jacobian's by torch.utils.flop_counter (convolutions, matrix "
            "products and their backward; not element-wise work) + the Gram's upper triangle; "
            "rate: one square 1024 float32 GEMM on "
            f"{self.threads} thread(s), best of 5 (not measured at the Gram's own shapes)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flops": self.flops, "limit_s_per_sample": self.limit_s_per_sample,
                "assumptions": self.assumptions}  # fmt: skip


def gemm_flops_per_s(
    size: int = 1024, dtype: torch.dtype = torch.float32, repeats: int = 5
) -> float:
    """Best-of-``repeats`` rate of one square ``size`` GEMM (2 size^3 FLOPs) on this process's
    torch threads."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (threads, caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def model_flops_per_sample(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    state: Mapping[str, torch.Tensor] | None = None,
    kernel: Kernel = "exact",
) -> float:
    """FLOPs of the batched Jacobian of ``x`` per sample (FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        batched_jacobian(model, space, x, state, kernel)
    return counter.get_total_flops() / len(x)


def precompute_cost(
    model: nn.Module,
    names: list[str],
    x: torch.Tensor,
    num_classes: int,
    state: Mapping[str, torch.Tensor] | None = None,
    kernel: Kernel = "exact",
    gemm_rate: float | None = None,
) -> PrecomputeCost:
    """The cost model for ``model`` on samples like ``x`` (a few suffice: the count is per
    sample); ``gemm_rate`` defaults to a fresh ``gemm_flops_per_s()``."""
    space = ParamSpace.from_model(model, names)
    rows = num_classes if kernel == "exact" else 1
    return PrecomputeCost(
        p=space.numel,
        num_classes=num_classes,
        kernel=kernel,
        model_flops=model_flops_per_sample(model, space, x, state, kernel),
        gram_flops=float(rows * space.numel * (space.numel + 1)),
        gemm_flops_per_s=gemm_rate if gemm_rate is not None else gemm_flops_per_s(),
        threads=torch.get_num_threads(),
    )
