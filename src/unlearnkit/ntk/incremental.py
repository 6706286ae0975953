"""Glue between a model, its data and an NTKState: precompute once, delete many times.

``precompute_state`` sums the Jacobians of D (at w0, eval mode) into A and b (``ntk.precompute``:
batched Jacobians, shards on a process pool or Ray, resumable) and factorises once;
``precompute_state_file`` does that with the shard cache next to the file and saves it;
``delete_samples`` computes only the deleted samples' Jacobians and downdates. The state's
fingerprint ties it to w0, the parameter names, the data and lambda, so a stale state is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.ntk.gram import jacobian_rows
from unlearnkit.ntk.jacobian import Kernel, check_kernel, iter_jacobians, residuals
from unlearnkit.ntk.memory import check_state_fits, precompute_memory
from unlearnkit.ntk.params import ParamSpace, state_hash
from unlearnkit.ntk.precompute import cache_dir_for, compute_gram, remove_cache
from unlearnkit.ntk.state import NTKState


def target_label(target_scale: float | None) -> str:
    """``onehot``, or ``scaled:<s>``: the regression targets, as a fingerprint part."""
    return "onehot" if target_scale is None else f"scaled:{float(target_scale)!r}"


def state_fingerprint(
    w0: Mapping[str, torch.Tensor],
    names: list[str],
    data_fingerprint: str,
    lam: float,
    target_scale: float | None = None,
) -> dict[str, str]:
    """What an NTK state depends on; each part is compared separately to explain staleness."""
    return {
        "w0": state_hash(w0),
        "params": state_hash({n: torch.zeros(0) for n in names}),
        "data": data_fingerprint,
        "lam": repr(float(lam)),
        "target": target_label(target_scale),
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
    *,
    kernel: Kernel = "exact",
    workers: int = 1,
    executor: str = "local",
    cache_dir: str | Path | None = None,
    target_scale: float | None = None,
    **options: Any,
) -> NTKState:
    """A, b and (A + lambda I)^-1 of the training set ``data`` (primal form, refused if too big).

    ``kernel="pntk"`` builds the pseudo-NTK state (approximate, opt-in). ``workers`` /
    ``executor`` ("local": processes pinned to one thread each; "ray": Ray tasks) split the
    Jacobians and Gram updates over shards; ``cache_dir`` keeps finished shards so an
    interrupted precompute resumes; ``target_scale`` None regresses onto one-hot targets, s
    onto s (onehot - 1/C) (recorded in the state and its fingerprint); ``options`` go to
    ``ntk.precompute.compute_gram`` (shard_size, max_shards, threads_per_worker, ray_address,
    checkpoint_s, product_dtype)."""
    if lam <= 0:
        raise UnlearnkitError(f"ridge lambda must be > 0, got {lam}")
    check_kernel(kernel)
    space = ParamSpace.from_model(model, names)
    rows = len(data) * (num_classes if kernel == "exact" else 1)
    pool = workers if executor == "local" and workers > 1 else 0
    check_state_fits(
        precompute_memory(space.numel, rows, num_classes, chunk_size, pool), space.numel, budget
    )
    fingerprint = state_fingerprint(
        w0, names, data_fingerprint or data.fingerprint(), lam, target_scale
    )
    stats = compute_gram(
        model,
        list(space.names),
        w0,
        data,
        num_classes,
        kernel=kernel,
        chunk_size=chunk_size,
        workers=workers,
        executor=executor,
        cache_dir=cache_dir,
        data_fingerprint=fingerprint["data"],
        dtype=dtype,
        progress=progress,
        target_scale=target_scale,
        **options,
    )
    return NTKState.from_gram(
        list(space.names),
        [list(s) for s in space.shapes],
        stats.gram,
        stats.rhs,
        lam,
        num_classes,
        data.ids,
        fingerprint,
        kernel,
        target_scale,
    )


def precompute_state_file(path: str | Path, *args: Any, **kwargs: Any) -> NTKState:
    """``precompute_state`` with its shard cache next to ``path`` (an interrupted run resumes
    from it), then the state saved atomically to ``path`` and the cache removed."""
    path = Path(path)
    cache = cache_dir_for(path)
    state = precompute_state(*args, cache_dir=cache, **kwargs)
    state.save(path)
    remove_cache(cache)
    return state


def forget_rows(
    model: nn.Module,
    state: NTKState,
    w0: Mapping[str, torch.Tensor],
    samples: ArraySplit,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked Jacobian rows and residuals of the samples to delete (of the state's kernel),
    ``chunk_size`` samples at a time through the shared batched path (``iter_jacobians``: the
    Jacobians on the runtime's device, the rows back on the CPU)."""
    space = ParamSpace.from_model(model, state.names)
    us, rs = [], []
    for rows, jac, f0 in iter_jacobians(model, space, samples, w0, chunk_size, state.kernel):
        resid = residuals(samples.y[rows], f0, state.num_classes, state.target_scale)
        u, r = jacobian_rows(jac, resid, state.gram.dtype)
        us.append(u.cpu())
        rs.append(r.cpu())
    return torch.cat(us), torch.cat(rs)


def delete_samples(
    model: nn.Module,
    state: NTKState,
    w0: Mapping[str, torch.Tensor],
    samples: ArraySplit,
    chunk_size: int = 256,
) -> None:
    """Downdate ``state`` by ``samples`` (validated first: unknown/deleted ids change nothing)."""
    state.positions(samples.ids)
    u, r = forget_rows(model, state, w0, samples, chunk_size)
    state.downdate(samples.ids, u, r)
