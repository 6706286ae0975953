"""Per-sample Jacobians of the logits w.r.t. the selected parameters only (torch.func).

Everything is evaluated at a given full state (w0: parameters *and* buffers) in eval mode, so
BatchNorm uses running statistics and each sample's logits depend on that sample alone; this is
what makes Gram matrices sums over samples and lets them be streamed in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from unlearnkit.ntk.params import ParamSpace

State = Mapping[str, torch.Tensor]


def unfuse_attention(model: nn.Module) -> list[nn.Module]:
    """Switch timm attention layers to the explicit softmax(QK^T)V path; returns those switched.

    The fused CPU kernel (scaled_dot_product_attention) has neither a forward-mode derivative
    (jvp fails) nor a vmap batching rule (per-sample Jacobians fall back to a slow loop)."""
    switched = [m for m in model.modules() if getattr(m, "fused_attn", False) is True]
    for module in switched:
        module.fused_attn = False
    return switched


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


def per_sample_jacobian(
    model: nn.Module, space: ParamSpace, x: torch.Tensor, state: State | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, f0): J is (n, C, P) = d logits / d params at ``state``; f0 the logits (n, C)."""
    trainable, frozen = split_state(model, space, state)
    logits = batch_logits_fn(model, frozen)

    def one(params: dict[str, torch.Tensor], xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = logits(params, xi.unsqueeze(0)).squeeze(0)
        return out, out

    with eval_mode(model):
        jac, f0 = vmap(jacrev(one, has_aux=True), in_dims=(None, 0))(trainable, x)
    return space.flatten_jacobian(jac, lead=2), f0.detach()


def iter_jacobians(
    model: nn.Module,
    space: ParamSpace,
    x: torch.Tensor,
    state: State | None = None,
    chunk_size: int = 64,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Stream (rows, J_chunk, f0_chunk) over ``x``: memory bounded by one chunk, not by N."""
    for start in range(0, len(x), chunk_size):
        rows = slice(start, min(start + chunk_size, len(x)))
        jac, f0 = per_sample_jacobian(model, space, x[rows], state)
        yield rows, jac, f0


def residuals(y: torch.Tensor, f0: torch.Tensor, num_classes: int) -> torch.Tensor:
    """r = onehot(y) - f(x; w0): the MSE targets of the linearized model."""
    return F.one_hot(y, num_classes).to(f0.dtype) - f0


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
        f0, jv = jvp(lambda p: logits(p, x), (trainable,), (tangent,))
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
