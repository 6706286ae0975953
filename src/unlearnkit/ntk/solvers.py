"""Ridge solves of the linearized model: primal (P x P), dual ((N C) x (N C)), matrix-free CG.

All three return the displacement w_S - w0 = argmin |J w - r|^2 + lambda |w|^2 for a set S.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from unlearnkit.errors import UnlearnkitError
from unlearnkit.ntk.jacobian import State, jvp_logits, residuals, vjp_logits
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.training import Inputs, input_batches, predict_logits


def _cholesky(matrix: torch.Tensor, what: str) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0:
        raise UnlearnkitError(f"{what} is not positive definite; increase the ridge lambda")
    return factor


def _regularized_factor(gram: torch.Tensor, lam: float) -> torch.Tensor:
    """Cholesky factor of A + lambda I (no identity matrix: two P x P buffers at a time)."""
    reg = gram.clone()
    reg.diagonal().add_(lam)
    return _cholesky(reg, "the regularized Gram A + lambda I")


def regularized_inverse(gram: torch.Tensor, lam: float) -> torch.Tensor:
    """(A + lambda I)^-1 via Cholesky (A is a Gram, so this is symmetric positive definite)."""
    return torch.cholesky_inverse(_regularized_factor(gram, lam))


def solve_primal(gram: torch.Tensor, rhs: torch.Tensor, lam: float) -> torch.Tensor:
    """(A + lambda I)^-1 b with A = J^T J, b = J^T r (b: P, or P x C columns); O(P^3)."""
    factor = _regularized_factor(gram, lam)
    if rhs.dim() == 2:
        return torch.cholesky_solve(rhs, factor)
    return torch.cholesky_solve(rhs.unsqueeze(1), factor).squeeze(1)


def dual_kernel(
    jac: torch.Tensor, dtype: torch.dtype = torch.float64, block: int = 2048
) -> torch.Tensor:
    """K = J J^T accumulated in ``dtype`` by row blocks (no full-precision copy of J)."""
    n = jac.shape[0]
    kernel = torch.empty(n, n, dtype=dtype)
    for i in range(0, n, block):
        bi = jac[i : i + block].to(dtype)
        for j in range(0, i + 1, block):
            part = bi @ jac[j : j + block].to(dtype).T
            kernel[i : i + block, j : j + block] = part
            kernel[j : j + block, i : i + block] = part.T
    return kernel


def _kernel_solve(kernel: torch.Tensor, resid: torch.Tensor, lam: float) -> torch.Tensor:
    reg = kernel.clone()
    reg.diagonal().add_(lam)
    factor = _cholesky(reg, "the regularized kernel J J^T + lambda I")
    return torch.cholesky_solve(resid.to(kernel.dtype).unsqueeze(1), factor).squeeze(1)


def _transpose_apply(jac: torch.Tensor, alpha: torch.Tensor, block: int = 2048) -> torch.Tensor:
    out = torch.zeros(jac.shape[1], dtype=alpha.dtype)
    for i in range(0, jac.shape[0], block):
        out += jac[i : i + block].to(alpha.dtype).T @ alpha[i : i + block]
    return out


def solve_dual(
    jac: torch.Tensor,
    resid: torch.Tensor,
    lam: float,
    dtype: torch.dtype = torch.float64,
    kernel: torch.Tensor | None = None,
) -> torch.Tensor:
    """J^T (J J^T + lambda I)^-1 r with J the stacked rows (N*C, P); O((N C)^3).
    ``kernel`` (J J^T) may be passed in, e.g. a sub-block of a larger set's kernel."""
    kernel = dual_kernel(jac, dtype) if kernel is None else kernel
    return _transpose_apply(jac, _kernel_solve(kernel, resid, lam))


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    tol: float = 1e-6,
    max_iter: int = 200,
) -> tuple[torch.Tensor, int]:
    """Solve M x = rhs for symmetric positive definite M given only x -> M x."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = r @ r
    stop = (tol * rhs.norm()) ** 2
    for it in range(1, max_iter + 1):
        if rr <= stop:
            return x, it - 1
        mp = matvec(p)
        alpha = rr / (p @ mp)
        x += alpha * p
        r -= alpha * mp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, max_iter


def solve_cg(
    model: nn.Module,
    space: ParamSpace,
    x: Inputs,
    y: torch.Tensor,
    num_classes: int,
    lam: float,
    state: State | None = None,
    chunk_size: int = 64,
    tol: float = 1e-6,
    max_iter: int = 200,
    target_scale: float | None = None,
) -> torch.Tensor:
    """Matrix-free (J^T J + lambda I)^-1 J^T r: one jvp + vjp pass over the data per iteration,
    memory O(P) — for when neither P x P nor (N C)^2 fits. ``x``: inputs or a split; a split
    is streamed a chunk at a time on every pass (decoded again, never held whole)."""
    dtype = next(iter(model.parameters())).dtype
    ys = y.split(chunk_size)

    rhs = torch.zeros(space.numel, dtype=dtype)
    for chunk, yc in zip(input_batches(x, chunk_size), ys, strict=True):
        f0 = _logits_at(model, chunk, state)
        rhs += vjp_logits(model, space, chunk, residuals(yc, f0, num_classes, target_scale), state)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        out = lam * v
        for chunk in input_batches(x, chunk_size):
            _, jv = jvp_logits(model, space, chunk, v, state)
            out = out + vjp_logits(model, space, chunk, jv, state)
        return out

    solution, _ = conjugate_gradient(matvec, rhs, tol=tol, max_iter=max_iter)
    return solution


def _logits_at(model: nn.Module, x: torch.Tensor, state: State | None) -> torch.Tensor:
    if state is None:
        return predict_logits(model, x)
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            return functional_call(model, dict(state), (x,))
        finally:
            model.train(was)
