"""Streamed sufficient statistics of the linearized model: A = sum J^T J, b = sum J^T r.

Both are sums over samples, so they are accumulated chunk by chunk (memory independent of N)
and a deletion subtracts the deleted samples' terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.ntk.jacobian import State, iter_jacobians, residuals
from unlearnkit.ntk.params import ParamSpace


@dataclass
class GramStats:
    gram: torch.Tensor  # A (P x P)
    rhs: torch.Tensor  # b (P,)
    count: int  # samples summed


def jacobian_rows(
    jac: torch.Tensor, resid: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, P) and (n, C) -> stacked rows U (n*C, P) and r (n*C,) in ``dtype``."""
    return jac.reshape(-1, jac.shape[-1]).to(dtype), resid.reshape(-1).to(dtype)


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
) -> GramStats:
    """A and b of the set (x, y), one chunk of Jacobians at a time."""
    p = space.numel
    gram = torch.zeros(p, p, dtype=dtype)
    rhs = torch.zeros(p, dtype=dtype)
    bar = tqdm(total=len(x), disable=not progress, desc="ntk gram", leave=False)
    for rows, jac, f0 in iter_jacobians(model, space, x, state, chunk_size):
        u, r = jacobian_rows(jac, residuals(y[rows], f0, num_classes), dtype)
        gram.addmm_(u.T, u)
        rhs.add_(u.T @ r)
        bar.update(rows.stop - rows.start)
    bar.close()
    return GramStats(gram, rhs, len(x))


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
