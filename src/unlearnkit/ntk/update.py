"""The NTK unlearning step shared by the ``ntk`` and ``fast_ntk`` methods.

Given w0, the retain set D_r and the forget set D_f: the ridge solutions of the linearized model
on D and on D_r (displacements from w0), then either
- ``paper``: w_unlearned = w_trained + scale * (w_Dr - w_D) on the real trained weights, with the
  angle-based scale of the NTK forgetting code (docs/algorithms.md §1.4) or scale 1; or
- ``linearized``: serve f(x; w0) + J(x) (w_Dr - w0), the linearized model retrained on D_r in
  closed form (exact with respect to that model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.data.base import ArraySplit, concat_splits
from unlearnkit.errors import UnlearnkitError
from unlearnkit.ntk.gram import accumulate_gram, stack_jacobian
from unlearnkit.ntk.incremental import delete_samples
from unlearnkit.ntk.jacobian import Kernel, check_kernel
from unlearnkit.ntk.linearized import LinearizedModel, PseudoLinearizedModel
from unlearnkit.ntk.memory import GIB, MemoryEstimate, check_fits, choose_solver, estimate_memory
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.ntk.solvers import dual_kernel, solve_cg, solve_dual, solve_primal
from unlearnkit.ntk.state import NTKState


@dataclass
class Solutions:
    full: torch.Tensor | None  # w_D - w0 (P,); pseudo-NTK: (P, C); None: erased (state.py)
    retain: torch.Tensor  # w_Dr - w0
    solver: str
    kernel: str = "exact"  # "pntk": the pseudo-NTK kernel machine (approximate)


def plan_solver(
    solver: str, p: int, n_samples: int, num_classes: int, chunk: int, max_memory_gb: float | None
) -> MemoryEstimate:
    """The solver to use ("auto" picks by a memory estimate); refuses before any work."""
    budget = None if max_memory_gb is None else int(max_memory_gb * GIB)
    rows = n_samples * num_classes
    if solver == "auto":
        return choose_solver(p, rows, num_classes, chunk, budget)
    est = estimate_memory(solver, p, rows, num_classes, chunk)
    check_fits(est, budget, what=f"NTK unlearning over {p} parameters and {n_samples} samples")
    return est


def ridge_solutions(
    model: nn.Module,
    names: list[str],
    w0: Mapping[str, torch.Tensor],
    retain: ArraySplit,
    forget: ArraySplit,
    num_classes: int,
    lam: float,
    solver: str = "auto",
    chunk_size: int = 64,
    max_memory_gb: float | None = None,
    progress: bool = False,
    kernel: Kernel = "exact",
    target_scale: float | None = None,
) -> Solutions:
    """w_D - w0 and w_Dr - w0 with the chosen solver (D = D_r + D_f; one pass over D).
    ``kernel="pntk"`` (approximate) always solves in primal form: one P x P Gram for all C.
    ``target_scale``: None fits one-hot targets, s fits s (onehot - 1/C)."""
    check_kernel(kernel)
    space = ParamSpace.from_model(model, names)
    if kernel == "pntk" and solver not in ("auto", "primal"):
        raise UnlearnkitError(f"the pseudo-NTK is solved in primal form, not with {solver!r}")
    plan = plan_solver(
        "primal" if kernel == "pntk" else solver,
        space.numel,
        len(retain) + len(forget),
        num_classes,
        chunk_size,
        max_memory_gb,
    )
    if plan.solver == "primal":
        a_r, a_f = (
            accumulate_gram(
                model,
                space,
                part,
                part.y,
                num_classes,
                w0,
                chunk_size,
                progress=progress,
                kernel=kernel,
                target_scale=target_scale,
            )
            for part in (retain, forget)
        )
        full = solve_primal(a_r.gram + a_f.gram, a_r.rhs + a_f.rhs, lam)
        return Solutions(full, solve_primal(a_r.gram, a_r.rhs, lam), "primal", kernel)
    both = concat_splits(retain, forget)  # D as a view: its inputs are loaded chunk by chunk
    if plan.solver == "dual":
        u, r = stack_jacobian(
            model, space, both, both.y, num_classes, w0, chunk_size, target_scale=target_scale
        )
        kernel = dual_kernel(u)  # one kernel; D_r's is its leading block
        full = solve_dual(u, r, lam, kernel=kernel)
        n_r = len(retain) * num_classes
        part = solve_dual(u[:n_r], r[:n_r], lam, kernel=kernel[:n_r, :n_r])
        return Solutions(full, part, "dual")
    full = solve_cg(
        model, space, both, both.y, num_classes, lam, w0, chunk_size, target_scale=target_scale
    )
    part = solve_cg(
        model,
        space,
        retain,
        retain.y,
        num_classes,
        lam,
        w0,
        chunk_size,
        target_scale=target_scale,
    )
    return Solutions(full.double(), part.double(), "cg")


def solutions_from_state(
    model: nn.Module, state: NTKState, w0: Mapping[str, torch.Tensor], forget: ArraySplit
) -> Solutions:
    """The same two solutions from a precomputed state: a Woodbury downdate by D_f only."""
    full = state.solution
    delete_samples(model, state, w0, forget)
    return Solutions(full, state.solution, "primal (incremental)", state.kernel)


def posterior_sample(
    solution: torch.Tensor, inverse: torch.Tensor, sigma: float, seed: int
) -> torch.Tensor:
    """w_Dr - w0 plus Gaussian noise of covariance sigma^2 (A_Dr + lambda I)^-1 (``inverse``):
    the NTK forgetting noise of Golatkar et al. 2020, i.e. a draw from the Bayesian posterior
    of the linearized ridge model on D_r (prior variance 1 / lambda) at temperature sigma^2.
    The covariance is D_r's alone and the draw is seeded by ``seed``, so the result is
    distributed exactly as the same noisy fit trained from scratch on D_r. A pseudo-NTK
    solution (P x C) gets an independent draw per class column."""
    if sigma == 0.0:
        return solution
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(solution.shape, generator=gen, dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(inverse.double())
    if int(info) != 0:
        raise UnlearnkitError("(A + lambda I)^-1 is not positive definite; increase lambda")
    return solution + sigma * (factor @ z).to(solution.dtype)


def angle_scale(delta: torch.Tensor, error: torch.Tensor) -> float:
    """Scale of the NTK forgetting code: (|delta| + 2 sin(a) |e|) / |delta|, with a the angle
    between delta = w_Dr - w_D and e = (w_trained - w0) - (w_Dr - w0), folded into [0, pi/2]."""
    dn, en = float(delta.norm()), float(error.norm())
    if dn == 0.0 or en == 0.0:
        return 1.0
    cos = max(-1.0, min(1.0, float(delta @ error) / (dn * en)))
    angle = math.acos(cos) - math.pi / 2 if cos < 0 else math.pi / 2 - math.acos(cos)
    return (dn + 2 * math.sin(angle) * en) / dn


def apply_paper_update(
    model: nn.Module,
    names: list[str],
    w0: Mapping[str, torch.Tensor],
    sol: Solutions,
    scale: str = "angle",
) -> float:
    """w <- w_trained + s (w_Dr - w_D) in place on the named parameters; returns s."""
    if sol.full is None:
        raise UnlearnkitError(
            "this NTK state no longer holds w_D - w0 (erased after deletions: it depends on "
            "the deleted samples); the paper update needs it: use mode 'linearized', or run "
            "`ntk precompute` again"
        )
    if sol.kernel != "exact":
        raise UnlearnkitError(
            "the paper's weight update needs the exact NTK: this solution is the pseudo-NTK "
            f"({sol.kernel}, one coefficient vector per class); use mode 'linearized'"
        )
    space = ParamSpace.from_model(model, names)
    params = dict(model.named_parameters())
    trained = space.flatten(params, dtype=torch.float64)
    start = space.flatten(w0, dtype=torch.float64)
    delta = (sol.retain - sol.full).double()
    # Nothing to forget (delta at rounding level, e.g. an empty deletion): the angle scale would
    # blow rounding noise up to a shift of about |error|, so leave the weights as trained.
    if float(delta.norm()) <= 1e-10 * max(1.0, float(sol.full.double().norm())):
        return 0.0
    s = angle_scale(delta, (trained - start) - sol.retain.double()) if scale == "angle" else 1.0
    with torch.no_grad():
        for n, value in space.unflatten(trained + s * delta).items():
            params[n].copy_(value.to(params[n].dtype))
    return s


def linearized_model(
    model: nn.Module, names: list[str], w0: Mapping[str, torch.Tensor], displacement: torch.Tensor
) -> LinearizedModel:
    """The linearized model at ``w0 + displacement`` (P,), or the pseudo-NTK kernel machine
    for per-class coefficients (P, C)."""
    if displacement.dim() == 2:
        return PseudoLinearizedModel(model, names, w0, displacement)
    return LinearizedModel(model, names, w0, displacement)
