"""Streamed sufficient statistics of the linearized model: A = sum J^T J, b = sum J^T r.

Both are sums over samples, so they are accumulated chunk by chunk (memory independent of N)
and a deletion subtracts the deleted samples' terms. Each chunk's U^T U over its stacked rows U
(rows x P) runs as GEMMs of the upper block triangle in the Jacobian's dtype (float32 for
float32 models: the fast BLAS path) added into a float64 accumulator, so the rounding of the
products stays per chunk and does not build up over the N / chunk additions (measured in
``tests/ntk/test_batched_jacobian.py``).

Kernels: ``exact`` stacks the C rows of every sample (b is a P-vector); ``pntk`` (pseudo-NTK,
approximate) has one row per sample, g = d (sum_c f_c / sqrt C) / dw, and b = G^T R is P x C:
the kernel pNTK (x) I_C solves the C classes' ridge problems with one shared Gram.

Device: the Jacobians and the accumulator live on the current runtime's device (float32 GEMMs
into float64 sums there: fast on data-centre GPUs), and A and b come back to the CPU, where the
float64 factorisation runs. On the CPU nothing moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.ntk.jacobian import Kernel, State, iter_jacobians, residuals
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.runtime.device import current_runtime
from unlearnkit.runtime.progress import report
from unlearnkit.training import Inputs


@dataclass
class GramStats:
    gram: torch.Tensor  # A (P x P)
    rhs: torch.Tensor  # b (P,), or (P, C) for the pseudo-NTK
    count: int  # samples summed


def jacobian_rows(
    jac: torch.Tensor, resid: torch.Tensor, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked rows U and residuals r: exact (n, C, P), (n, C) -> (n*C, P), (n*C,); pntk rows
    (n, P) stay as they are with residuals (n, C). ``dtype`` None keeps the Jacobian's."""
    if jac.dim() == 3:
        jac, resid = jac.reshape(-1, jac.shape[-1]), resid.reshape(-1)
    return (jac, resid) if dtype is None else (jac.to(dtype), resid.to(dtype))


class GramAccumulator:
    """A += U^T U and b += U^T r, one chunk of rows at a time, into ``dtype`` (float64).

    A is symmetric, so only its upper block triangle is multiplied (``block`` x ``block`` GEMMs
    over the chunk's rows: about half the FLOPs of the full product) and the lower triangle is
    filled by ``stats()``. Rows of a lower-precision dtype (float32) are multiplied in that
    dtype, each block product going through a small buffer into the accumulator."""

    def __init__(
        self,
        p: int,
        rhs_columns: int | None = None,
        dtype: torch.dtype = torch.float64,
        product_dtype: torch.dtype | None = None,
        block: int = 1024,
        device: torch.device | None = None,
    ) -> None:
        self.gram = torch.zeros(p, p, dtype=dtype, device=device)
        shape = (p,) if rhs_columns is None else (p, rhs_columns)
        self.rhs = torch.zeros(shape, dtype=dtype, device=device)
        self.count = 0
        self.product_dtype = product_dtype  # None: the rows' own dtype
        self.bounds = [(i, min(i + block, p)) for i in range(0, p, block)]
        self._buffer: torch.Tensor | None = None  # one block product in the rows' dtype

    def add(self, rows: torch.Tensor, resid: torch.Tensor, samples: int) -> None:
        if self.product_dtype is not None:
            rows = rows.to(self.product_dtype)
        same = rows.dtype == self.gram.dtype
        if not same and (self._buffer is None or self._buffer.dtype != rows.dtype):
            size = self.bounds[0][1] - self.bounds[0][0]
            self._buffer = torch.empty(size, size, dtype=rows.dtype, device=rows.device)
        for i, (a0, a1) in enumerate(self.bounds):
            left = rows[:, a0:a1].T
            for c0, c1 in self.bounds[i:]:
                target = self.gram[a0:a1, c0:c1]
                if same:
                    target.addmm_(left, rows[:, c0:c1])
                else:
                    assert self._buffer is not None
                    part = self._buffer[: a1 - a0, : c1 - c0]
                    torch.mm(left, rows[:, c0:c1], out=part)
                    target.add_(part)
        wide = rows.to(self.rhs.dtype)
        self.rhs.add_(wide.T @ resid.to(self.rhs.dtype))
        self.count += samples

    def stats(self) -> GramStats:
        """The sums so far, A made whole (lower blocks = transposed upper ones), on the CPU."""
        for i, (a0, a1) in enumerate(self.bounds):
            for c0, c1 in self.bounds[i + 1 :]:
                self.gram[c0:c1, a0:a1] = self.gram[a0:a1, c0:c1].T
        self._buffer = None
        return GramStats(self.gram.cpu(), self.rhs.cpu(), self.count)


def rhs_columns(kernel: Kernel, num_classes: int) -> int | None:
    return None if kernel == "exact" else num_classes


def accumulate_gram(
    model: nn.Module,
    space: ParamSpace,
    x: Inputs,
    y: torch.Tensor,
    num_classes: int,
    state: State | None = None,
    chunk_size: int = 64,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    kernel: Kernel = "exact",
    on_chunk: Callable[[int], None] | None = None,
    product_dtype: torch.dtype | None = None,
    target_scale: float | None = None,
) -> GramStats:
    """A and b of the set (x, y) in this process, one chunk of Jacobians at a time (``x``:
    inputs or a split, loaded a chunk at a time).
    (``ntk.precompute`` splits the same work over processes or Ray and can resume.)
    ``product_dtype``: dtype of the chunk GEMMs (default: the Jacobian's, float32 for a float32
    model); ``dtype``: the accumulator's. ``target_scale``: None regresses onto one-hot
    targets, s onto s (onehot - 1/C) (``jacobian.regression_targets``)."""
    device = current_runtime().device  # the accumulator sits beside the Jacobians
    columns = rhs_columns(kernel, num_classes)
    acc = GramAccumulator(space.numel, columns, dtype, product_dtype, device=device)
    for rows, jac, f0 in iter_jacobians(model, space, x, state, chunk_size, kernel):
        u, r = jacobian_rows(jac, residuals(y[rows], f0, num_classes, target_scale))
        acc.add(u, r, rows.stop - rows.start)
        if progress:
            report("ntk gram", rows.stop, len(x))
        if on_chunk is not None:
            on_chunk(rows.stop - rows.start)
    return acc.stats()


def stack_jacobian(
    model: nn.Module,
    space: ParamSpace,
    x: Inputs,
    y: torch.Tensor,
    num_classes: int,
    state: State | None = None,
    chunk_size: int = 64,
    dtype: torch.dtype = torch.float32,
    target_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole stacked Jacobian (N*C, P) and residual (N*C,): for the dual form only."""
    rows_u, rows_r = [], []
    for rows, jac, f0 in iter_jacobians(model, space, x, state, chunk_size):
        u, r = jacobian_rows(jac, residuals(y[rows], f0, num_classes, target_scale), dtype)
        rows_u.append(u.cpu())
        rows_r.append(r.cpu())
    return torch.cat(rows_u), torch.cat(rows_r)
