"""Streamed sufficient statistics of the linearized model: A = sum J^T J, b = sum J^T r.

Both are sums over samples, so they are accumulated chunk by chunk (memory independent of N)
and a deletion subtracts the deleted samples' terms. Each chunk is one GEMM U^T U over its
stacked rows U (rows x P) in the Jacobian's dtype (float32 for float32 models: the fast BLAS
path) added into a float64 accumulator, so the rounding of the products stays per chunk and
does not build up over the N / chunk additions (measured in ``tests/ntk/test_precompute.py``).

Kernels: ``exact`` stacks the C rows of every sample (b is a P-vector); ``pntk`` (pseudo-NTK,
approximate) has one row per sample, g = d (sum_c f_c / sqrt C) / dw, and b = G^T R is P x C:
the kernel pNTK (x) I_C solves the C classes' ridge problems with one shared Gram.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.ntk.jacobian import Kernel, State, iter_jacobians, residuals
from unlearnkit.ntk.params import ParamSpace


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
    """A += U^T U and b += U^T r, one chunk of rows at a time, into ``dtype`` (float64)."""

    def __init__(
        self,
        p: int,
        rhs_columns: int | None = None,
        dtype: torch.dtype = torch.float64,
        product_dtype: torch.dtype | None = None,
    ) -> None:
        self.gram = torch.zeros(p, p, dtype=dtype)
        shape = (p,) if rhs_columns is None else (p, rhs_columns)
        self.rhs = torch.zeros(shape, dtype=dtype)
        self.count = 0
        self.product_dtype = product_dtype  # None: the rows' own dtype
        self._product: torch.Tensor | None = None  # reused P x P buffer for lower-precision GEMMs

    def add(self, rows: torch.Tensor, resid: torch.Tensor, samples: int) -> None:
        if self.product_dtype is not None:
            rows = rows.to(self.product_dtype)
        if rows.dtype == self.gram.dtype:
            self.gram.addmm_(rows.T, rows)
        else:
            if self._product is None or self._product.dtype != rows.dtype:
                self._product = torch.empty(self.gram.shape, dtype=rows.dtype)
            torch.mm(rows.T, rows, out=self._product)
            self.gram.add_(self._product)
        wide = rows.to(self.rhs.dtype)
        self.rhs.add_(wide.T @ resid.to(self.rhs.dtype))
        self.count += samples

    def stats(self) -> GramStats:
        self._product = None
        return GramStats(self.gram, self.rhs, self.count)


def rhs_columns(kernel: Kernel, num_classes: int) -> int | None:
    return None if kernel == "exact" else num_classes


def accumulate_gram(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    state: State | None = None,
    chunk_size: int = 64,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    kernel: Kernel = "exact",
    on_chunk: Callable[[int], None] | None = None,
    product_dtype: torch.dtype | None = None,
) -> GramStats:
    """A and b of the set (x, y) in this process, one chunk of Jacobians at a time.
    (``ntk.precompute`` splits the same work over processes or Ray and can resume.)
    ``product_dtype``: dtype of the chunk GEMMs (default: the Jacobian's, float32 for a float32
    model); ``dtype``: the accumulator's."""
    acc = GramAccumulator(space.numel, rhs_columns(kernel, num_classes), dtype, product_dtype)
    bar = tqdm(total=len(x), disable=not progress, desc="ntk gram", unit="sample", leave=False)
    for rows, jac, f0 in iter_jacobians(model, space, x, state, chunk_size, kernel):
        u, r = jacobian_rows(jac, residuals(y[rows], f0, num_classes))
        acc.add(u, r, rows.stop - rows.start)
        bar.update(rows.stop - rows.start)
        if on_chunk is not None:
            on_chunk(rows.stop - rows.start)
    bar.close()
    return acc.stats()


def stack_jacobian(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    state: State | None = None,
    chunk_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole stacked Jacobian (N*C, P) and residual (N*C,): for the dual form only."""
    rows_u, rows_r = [], []
    for rows, jac, f0 in iter_jacobians(model, space, x, state, chunk_size):
        u, r = jacobian_rows(jac, residuals(y[rows], f0, num_classes), dtype)
        rows_u.append(u)
        rows_r.append(r)
    return torch.cat(rows_u), torch.cat(rows_r)
