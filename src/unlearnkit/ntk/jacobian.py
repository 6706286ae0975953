"""Per-sample Jacobians of the logits w.r.t. the selected parameters only.

Everything is evaluated at a given full state (w0: parameters *and* buffers) in eval mode, so
BatchNorm uses running statistics and each sample's logits depend on that sample alone; this is
what makes Gram matrices sums over samples and lets them be streamed in chunks.

Two paths give the same rows (to rounding; tested):
- ``batched_jacobian`` (the default everywhere): one forward pass of the whole chunk and C
  reverse passes of the summed one-hot logits through the activations only (frozen weights get
  no gradient); the head's block is analytic and BatchNorm / prompt parameters get their
  per-sample gradients from the activation gradients (``ntk.rules``). ``kernel="pntk"`` takes
  one reverse pass of the summed logits / sqrt(C) instead: one row per sample (pseudo-NTK).
- ``reference_jacobian``: ``vmap(jacrev)`` of the model on one sample at a time; kept as the
  reference the fast path is tested against and for parameters no rule covers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from unlearnkit.errors import UnlearnkitError
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.ntk.rules import HeadTap, JacobianPlan, jacobian_plan
from unlearnkit.runtime.device import current_runtime
from unlearnkit.training import Inputs, input_batches

State = Mapping[str, torch.Tensor]
Kernel = Literal["exact", "pntk"]
KERNELS = ("exact", "pntk")


def forward_jvp(fn: Callable, primals: tuple, tangents: tuple) -> tuple:
    """``torch.func.jvp`` without the FutureWarning torch 2.14 prints the first time: loading
    its own forward-mode decompositions calls the deprecated ``torch.jit.script`` (torch's
    internals, not ours; a user would see it in the middle of a run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        return jvp(fn, primals, tangents)


def check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise UnlearnkitError(
            f"unknown NTK kernel {kernel!r}; choose exact or pntk (the pseudo-NTK, approximate)"
        )


def unfuse_attention(model: nn.Module) -> list[nn.Module]:
    """Switch timm attention layers to the explicit softmax(QK^T)V path; returns those switched.

    The fused CPU kernel (scaled_dot_product_attention) has neither a forward-mode derivative
    (jvp fails) nor a vmap batching rule (per-sample Jacobians fall back to a slow loop)."""
    switched = [m for m in model.modules() if getattr(m, "fused_attn", False) is True]
    for module in switched:
        module.fused_attn = False
    return switched


class _ClampHardsigmoid(nn.Module):
    """hardsigmoid as clamp(x / 6 + 1/2, 0, 1): the same function, built from ops whose
    derivatives are themselves differentiable (torch has no derivative of hardsigmoid_backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x / 6 + 0.5).clamp(0.0, 1.0)


class _ClampHardswish(_ClampHardsigmoid):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * super().forward(x)


_TWICE_DIFFERENTIABLE = {nn.Hardsigmoid: _ClampHardsigmoid, nn.Hardswish: _ClampHardswish}


def twice_differentiable(model: nn.Module) -> int:
    """Replace activation modules whose backward has no derivative (MobileNetV3's hardsigmoid
    and hardswish) by equal clamp-based ones, in place; returns how many were replaced.

    A linearised model's output is a forward-mode derivative; training it (relearn time) takes
    a backward pass through that, i.e. a second derivative of every activation."""
    swaps = [
        (parent, name, _TWICE_DIFFERENTIABLE[type(child)]())
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) in _TWICE_DIFFERENTIABLE
    ]
    for parent, name, replacement in swaps:
        setattr(parent, name, replacement)
    return len(swaps)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm running statistics) and unfused attention, both restored after."""
    was = model.training
    switched = unfuse_attention(model)
    model.eval()
    try:
        yield model
    finally:
        model.train(was)
        for module in switched:
            module.fused_attn = True


def split_state(
    model: nn.Module, space: ParamSpace, state: State | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trainable, frozen) tensors of ``state`` (default: the model's own params and buffers)."""
    full = (
        dict(state)
        if state is not None
        else {**dict(model.named_parameters()), **dict(model.named_buffers())}
    )
    full = {k: v.detach() for k, v in full.items()}
    wanted = set(space.names)
    trainable = {n: full[n] for n in space.names}
    frozen = {k: v for k, v in full.items() if k not in wanted}
    return trainable, frozen


def batch_logits_fn(
    model: nn.Module, frozen: dict[str, torch.Tensor]
) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """logits(trainable, x) for a batch x, all other tensors fixed to ``frozen``."""

    def logits(trainable: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**frozen, **trainable}, (x,))

    return logits


def reference_jacobian(
    model: nn.Module, space: ParamSpace, x: torch.Tensor, state: State | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, f0) by ``vmap(jacrev)`` over single samples: J (n, C, P), f0 the logits (n, C)."""
    trainable, frozen = split_state(model, space, state)
    logits = batch_logits_fn(model, frozen)

    def one(params: dict[str, torch.Tensor], xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = logits(params, xi.unsqueeze(0)).squeeze(0)
        return out, out

    with eval_mode(model):
        jac, f0 = vmap(jacrev(one, has_aux=True), in_dims=(None, 0))(trainable, x)
    return space.flatten_jacobian(jac, lead=2), f0.detach()


def _head_block(head: HeadTap, name: str, num_classes: int, kernel: Kernel) -> torch.Tensor:
    """The analytic head columns: (n, C, size) rows of the exact kernel, (n, size) for pntk."""
    phi = head.phi
    assert phi is not None
    n, c = phi.shape[0], num_classes
    attr = next(a for a, full in head.names.items() if full == name)
    if kernel == "pntk":  # sum over classes of the exact rows, / sqrt(C)
        block = phi.unsqueeze(1).expand(n, c, phi.shape[1]) if attr == "weight" else None
        if block is None:
            return phi.new_full((n, c), 1.0 / math.sqrt(c))
        return block.reshape(n, -1) / math.sqrt(c)
    if attr == "weight":  # d logit_c / d W[c', f] = [c = c'] phi_f
        block = phi.new_zeros(n, c, c, phi.shape[1])
        block.diagonal(dim1=1, dim2=2).copy_(phi.unsqueeze(-1).expand(n, phi.shape[1], c))
        return block.reshape(n, c, -1)
    return torch.eye(c, dtype=phi.dtype).expand(n, c, c).clone()  # d logit_c / d b[c']


def batched_jacobian(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    state: State | None = None,
    kernel: Kernel = "exact",
    plan: JacobianPlan | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, f0) for a whole chunk at once. ``exact``: J is (n, C, P) = d logits / d params;
    ``pntk``: J is (n, P) = d (sum_c logit_c / sqrt C) / d params. f0: the logits (n, C)."""
    check_kernel(kernel)
    plan = plan if plan is not None else jacobian_plan(model, space)
    trainable, frozen = split_state(model, space, state)
    tensors = {**frozen, **trainable}
    cols: dict[str, torch.Tensor] = {}
    generic = list(plan.generic)
    with eval_mode(model), torch.enable_grad(), plan.installed():
        # the graph runs through the activations only: every parameter is a detached constant
        xin = x.detach().requires_grad_(bool(plan.taps))
        logits = functional_call(model, tensors, (xin,))
        n, c = logits.shape
        taps = plan.graph_tensors()
        if taps:
            if kernel == "exact":
                per_class = []
                for k in range(c):
                    cot = torch.zeros_like(logits)
                    cot[:, k] = 1.0
                    grads = torch.autograd.grad(
                        logits, taps, cot, retain_graph=k < c - 1, allow_unused=True
                    )
                    per_class.append(plan.per_sample(grads))
                cols = {name: torch.stack([d[name] for d in per_class], 1) for name in per_class[0]}
            else:
                cot = torch.full_like(logits, 1.0 / math.sqrt(c))
                grads = torch.autograd.grad(logits, taps, cot, allow_unused=True)
                cols = plan.per_sample(grads)
        head = plan.head
        if head is not None:
            if head.usable(logits):
                cols.update({nm: _head_block(head, nm, c, kernel) for nm in head.names.values()})
            else:  # the logits are not the head's output: no analytic block
                generic += head.names.values()
        f0 = logits.detach()
    if generic:
        order = {nm: i for i, nm in enumerate(space.names)}
        names = sorted(generic, key=order.__getitem__)
        sub = ParamSpace(tuple(names), tuple(space.shapes[order[nm]] for nm in names))
        jac, _ = reference_jacobian(model, sub, x, state)
        if kernel == "pntk":
            jac = jac.sum(1) / math.sqrt(c)
        for nm, part in zip(names, jac.split(sub.sizes, dim=-1), strict=True):
            cols[nm] = part
    lead = (n, c) if kernel == "exact" else (n,)
    return torch.cat([cols[nm].reshape(*lead, -1) for nm in space.names], dim=-1), f0


def per_sample_jacobian(
    model: nn.Module, space: ParamSpace, x: torch.Tensor, state: State | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, f0): J is (n, C, P) = d logits / d params at ``state``; f0 the logits (n, C)."""
    return batched_jacobian(model, space, x, state)


def iter_jacobians(
    model: nn.Module,
    space: ParamSpace,
    x: Inputs,
    state: State | None = None,
    chunk_size: int = 64,
    kernel: Kernel = "exact",
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Stream (rows, J_chunk, f0_chunk) over ``x``: memory bounded by one chunk, not by N.
    ``x``: model inputs or a split, whose chunks are loaded through the shared batched path
    (``training.input_batches``: ``--workers``), never all at once. The Jacobians are computed
    on the current runtime's device (no autocast: float32) and yielded there; ``x`` and
    ``state`` may stay on the CPU."""
    runtime = current_runtime()
    if state is not None:
        state = {k: runtime.tensor(v) for k, v in state.items()}
    with runtime.placed(model):
        plan = jacobian_plan(model, space)
        start = 0
        for chunk in input_batches(x, chunk_size):
            rows = slice(start, start + len(chunk))
            start = rows.stop
            jac, f0 = batched_jacobian(model, space, runtime.tensor(chunk), state, kernel, plan)
            yield rows, jac, f0


def regression_targets(
    y: torch.Tensor,
    num_classes: int,
    target_scale: float | None = None,
    like: torch.Tensor | None = None,
) -> torch.Tensor:
    """The MSE targets of the linearized model: onehot(y) (``target_scale`` None, the
    ``onehot`` target) or s (onehot(y) - 1/C) (the ``scaled`` target: centred, so the softmax of
    a perfect fit is that of logits s apart, on a cross-entropy model's scale). s is a fixed
    constant, never a statistic of the data, so the targets of a sample depend on that sample
    alone and A, b stay sums over samples: the downdate stays exact."""
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else y.device
    onehot = F.one_hot(y.to(device), num_classes).to(dtype)
    if target_scale is None:
        return onehot
    return float(target_scale) * (onehot - 1.0 / num_classes)


def residuals(
    y: torch.Tensor, f0: torch.Tensor, num_classes: int, target_scale: float | None = None
) -> torch.Tensor:
    """r = t(y) - f(x; w0): the residual the linearized model fits (``regression_targets``)."""
    return regression_targets(y, num_classes, target_scale, like=f0) - f0


def jvp_logits(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    direction: torch.Tensor,
    state: State | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f0, J v) for a batch without forming J (forward mode)."""
    trainable, frozen = split_state(model, space, state)
    logits = batch_logits_fn(model, frozen)
    tangent = {k: v.to(trainable[k].dtype) for k, v in space.unflatten(direction).items()}
    with eval_mode(model):
        f0, jv = forward_jvp(lambda p: logits(p, x), (trainable,), (tangent,))
    return f0, jv


def vjp_logits(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    cotangent: torch.Tensor,
    state: State | None = None,
) -> torch.Tensor:
    """J^T u for a batch (u is n x C) without forming J (reverse mode); returns (P,)."""
    trainable, frozen = split_state(model, space, state)
    logits = batch_logits_fn(model, frozen)
    with eval_mode(model):
        _, pullback = vjp(lambda p: logits(p, x), trainable)
        (grads,) = pullback(cotangent.to(next(iter(trainable.values())).dtype))
    return space.flatten(grads)
