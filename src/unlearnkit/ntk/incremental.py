"""Glue between a model, its data and an NTKState: precompute once, delete many times.

``precompute_state`` streams the Jacobians of D (at w0, eval mode) into A and b and factorises
once; ``delete_samples`` computes only the deleted samples' Jacobians and downdates. The state's
fingerprint ties it to w0, the parameter names, the data and lambda, so a stale state is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.ntk.gram import accumulate_gram, jacobian_rows
from unlearnkit.ntk.jacobian import per_sample_jacobian, residuals
from unlearnkit.ntk.memory import check_fits, estimate_memory
from unlearnkit.ntk.params import ParamSpace, state_hash
from unlearnkit.ntk.state import NTKState


def state_fingerprint(
    w0: Mapping[str, torch.Tensor], names: list[str], data_fingerprint: str, lam: float
) -> dict[str, str]:
    """What an NTK state depends on; each part is compared separately to explain staleness."""
    return {
        "w0": state_hash(w0),
        "params": state_hash({n: torch.zeros(0) for n in names}),
        "data": data_fingerprint,
        "lam": repr(float(lam)),
    }


def precompute_state(
    model: nn.Module,
    names: list[str],
    w0: Mapping[str, torch.Tensor],
    data: ArraySplit,
    num_classes: int,
    lam: float,
    chunk_size: int = 64,
    data_fingerprint: str | None = None,
    dtype: torch.dtype = torch.float64,
    budget: int | None = None,
    progress: bool = False,
) -> NTKState:
    """A, b and (A + lambda I)^-1 of the training set ``data`` (primal form, refused if too big)."""
    if lam <= 0:
        raise UnlearnkitError(f"ridge lambda must be > 0, got {lam}")
    space = ParamSpace.from_model(model, names)
    check_fits(
        estimate_memory("primal", space.numel, len(data) * num_classes, num_classes, chunk_size),
        budget,
        what=f"NTK precompute over {space.numel} parameters",
    )
    stats = accumulate_gram(
        model, space, data.x, data.y, num_classes, w0, chunk_size, dtype, progress
    )
    fingerprint = state_fingerprint(w0, names, data_fingerprint or data.fingerprint(), lam)
    return NTKState.from_gram(
        list(space.names),
        [list(s) for s in space.shapes],
        stats.gram,
        stats.rhs,
        lam,
        num_classes,
        data.ids,
        fingerprint,
    )


def forget_rows(
    model: nn.Module, state: NTKState, w0: Mapping[str, torch.Tensor], samples: ArraySplit
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked Jacobian rows and residuals of the samples to delete."""
    space = ParamSpace.from_model(model, state.names)
    jac, f0 = per_sample_jacobian(model, space, samples.x, w0)
    return jacobian_rows(jac, residuals(samples.y, f0, state.num_classes), state.gram.dtype)


def delete_samples(
    model: nn.Module,
    state: NTKState,
    w0: Mapping[str, torch.Tensor],
    samples: ArraySplit,
    chunk_size: int = 256,
) -> None:
    """Downdate ``state`` by ``samples`` (validated first: unknown/deleted ids change nothing)."""
    state.positions(samples.ids)
    us, rs = [], []
    for start in range(0, len(samples), chunk_size):
        part = samples.subset(torch.arange(start, min(start + chunk_size, len(samples))))
        u, r = forget_rows(model, state, w0, part)
        us.append(u)
        rs.append(r)
    state.downdate(samples.ids, torch.cat(us), torch.cat(rs))
