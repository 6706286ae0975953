"""The channel-stacked pass: every shard's adapted part as one grouped network, no ``vmap``.

``torch.vmap`` runs any network over stacked weights, but on the CPU it loses the memory
format: every op sees ``(m * N, C, H, W)`` in NCHW, and this build's NCHW max-pool kernel is
~30x slower than its channels-last one (measured: 9.1 vs 0.27 ms on 16 x 640 x 14 x 14, 1
thread); frozen batch norms become separate multiply / add passes. Here the shards live side
by side in the *channel* dimension instead (``(N, m * C, H, W)``, shard-major), so:

- a convolution is one grouped convolution (``groups = m * g``) over the shards' merged weights
  concatenated on the output channels; the first one after the trunk reads the shared input and
  needs no grouping at all (m output blocks of one ordinary convolution);
- a frozen batch norm is folded into the convolution before it (exact: eval-mode affine);
- activations, poolings, adds and ``flatten`` are channel-wise and run unchanged;
- a Linear layer (and the heads) is one batched matmul over ``(N, m, F)``.

Only graphs built from those pieces are stacked this way (:func:`stackable` says which); any
other network (attention, layer norms, reshapes of the channel axis) keeps the ``vmap`` pass,
and both are tested against the per-shard loop.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

Tensors = dict[str, torch.Tensor]

# modules and functions that act on each channel (or each feature) alone: they run unchanged on
# shard-stacked channels
_CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_CHANNELWISE_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu6,
    F.gelu,
    F.silu,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
}
_ADDS: set[Any] = {operator.add, operator.iadd, torch.add}
_CHANNELS_LAST = torch.channels_last


@dataclass(frozen=True)
class _Value:
    """A value of the interpreted graph: ``stacked`` holds the m shards side by side in dim 1."""

    tensor: torch.Tensor
    stacked: bool


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        mod = modules[str(node.target)]
        return isinstance(mod, nn.Flatten) and mod.start_dim == 1 and mod.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    return False


def _supported(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op in ("placeholder", "output"):
        return True
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, nn.Conv2d):
            return mod.padding_mode == "zeros"
        if isinstance(mod, nn.BatchNorm2d):
            return mod.track_running_stats and mod.running_mean is not None
        return isinstance(mod, (*_CHANNELWISE_MODULES, nn.Linear)) or _is_flatten(node, modules)
    if node.op == "call_function":
        if node.target in _CHANNELWISE_FUNCTIONS:
            return all(not isinstance(a, fx.Node) for a in node.args[1:])
        if node.target in _ADDS:
            return len(node.args) == 2 and not node.kwargs
        return _is_flatten(node, modules)
    return False


def stackable(rest: fx.GraphModule) -> bool:
    """Can ``rest`` (the adapted part, traced) run shard-stacked? Only convolutions, frozen batch
    norms, Linear layers and channel-wise operations qualify."""
    modules = dict(rest.named_modules())
    return all(_supported(n, modules) for n in rest.graph.nodes)


def _fold_targets(rest: fx.GraphModule) -> dict[str, str]:
    """Batch norm -> the convolution it folds into (the conv's only user, no bias ops between)."""
    modules = dict(rest.named_modules())
    folds = {}
    for node in rest.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(modules[src.target], nn.Conv2d)
            and len(src.users) == 1
        ):
            folds[str(node.target)] = str(src.target)
    return folds


class StackedRest:
    """The adapted part of one network, prepared for shard-stacked passes.

    ``weights(per_shard)`` turns each shard's merged weights (names as in ``rest``) and head into
    the stacked tensors of one view (batch norms folded, channels-last); ``__call__`` runs a
    pass with them and returns ``(m, N, classes)`` logits."""

    def __init__(self, rest: fx.GraphModule, prefix: str) -> None:
        self.rest, self.prefix = rest, prefix
        self.modules = dict(rest.named_modules())
        self.folds = _fold_targets(rest)
        self.folded_into = {conv: bn for bn, conv in self.folds.items()}

    def _bn_scale_shift(self, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        return scale, shift

    @torch.no_grad()
    def weights(self, per_shard: tuple[tuple[Tensors, Tensors], ...]) -> Tensors:
        """Stacked parameters of one view: for every conv / linear of the rest, the m shards'
        weights (their own merge or the shared frozen one) concatenated on the output axis,
        with their biases; the heads as ``(m, classes, F)`` / ``(m, classes)``."""
        out: Tensors = {}
        m = len(per_shard)
        for name, mod in self.modules.items():
            if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                continue
            key = f"{self.prefix}{name}.weight"
            ws = [w.get(key, mod.weight) for w, _ in per_shard]
            weight = torch.stack(ws)  # (m, out, ...)
            bias = mod.bias if mod.bias is not None else torch.zeros(weight.shape[1])
            bias = bias.expand(m, -1)
            bn_name = self.folded_into.get(name)
            if bn_name is not None:
                scale, shift = self._bn_scale_shift(self.modules[bn_name])
                weight = weight * scale.view(1, -1, *([1] * (weight.dim() - 2)))
                bias = bias * scale + shift
            if isinstance(mod, nn.Conv2d):
                out[f"{name}.weight"] = weight.flatten(0, 1).contiguous(
                    memory_format=_CHANNELS_LAST
                )
            else:
                out[f"{name}.weight"] = weight.contiguous()
            out[f"{name}.bias"] = bias.reshape(-1).contiguous()
        heads = [h for _, h in per_shard]
        out["head.weight"] = torch.stack([h["weight"] for h in heads])
        out["head.bias"] = torch.stack(  # a head without a bias adds zero
            [h.get("bias", torch.zeros(h["weight"].shape[0])) for h in heads]
        )
        return out

    def __call__(self, stacked: Tensors, trunk: tuple[Any, ...]) -> torch.Tensor:
        m = stacked["head.weight"].shape[0]
        env: dict[fx.Node, _Value] = {}
        inputs = iter(trunk)
        result: _Value | None = None
        for node in self.rest.graph.nodes:
            if node.op == "placeholder":
                x = next(inputs)
                if x.dim() == 4:
                    x = x.contiguous(memory_format=_CHANNELS_LAST)
                env[node] = _Value(x, stacked=False)
            elif node.op == "output":
                result = env[node.args[0]]
            else:
                env[node] = self._step(node, env, stacked, m)
        assert result is not None
        return _linear(result, stacked["head.weight"], stacked["head.bias"], m).permute(1, 0, 2)

    def _step(self, node: fx.Node, env: dict[fx.Node, _Value], stacked: Tensors, m: int) -> _Value:
        args = [env[a] if isinstance(a, fx.Node) else a for a in node.args]
        if node.op == "call_module":
            name = str(node.target)
            mod = self.modules[name]
            x = args[0]
            if isinstance(mod, nn.Conv2d):
                return _conv(x, mod, stacked[f"{name}.weight"], stacked[f"{name}.bias"], m)
            if isinstance(mod, nn.BatchNorm2d):
                if name in self.folds:
                    return x  # folded into its convolution's weights
                return _batch_norm(x, mod, m)
            if isinstance(mod, nn.Linear):
                w, b = stacked[f"{name}.weight"], stacked[f"{name}.bias"].view(m, -1)
                return _Value(_linear(x, w, b, m).flatten(1), stacked=True)
            return _Value(mod(x.tensor), x.stacked)  # channel-wise, or flatten(1)
        if node.target in _ADDS:
            a, b = args
            if isinstance(a, _Value) and isinstance(b, _Value):
                if a.stacked != b.stacked:
                    a, b = (_repeat(v, m) for v in (a, b))
                return _Value(a.tensor + b.tensor, a.stacked or b.stacked)
            value = a if isinstance(a, _Value) else b
            other = b if isinstance(a, _Value) else a
            return _Value(value.tensor + other, value.stacked)
        fn: Callable[..., torch.Tensor] = node.target  # type: ignore[assignment]
        x = args[0]
        return _Value(fn(x.tensor, *args[1:], **node.kwargs), x.stacked)


def _repeat(value: _Value, m: int) -> _Value:
    if value.stacked:
        return value
    reps = [1, m] + [1] * (value.tensor.dim() - 2)
    return _Value(value.tensor.repeat(*reps), stacked=True)


def _conv(x: _Value, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, m: int) -> _Value:
    """One (grouped) convolution for every shard. A shared input with ungrouped convs needs no
    grouping: the m weight blocks are one convolution's output channels."""
    if not x.stacked and conv.groups > 1:
        x = _repeat(x, m)
    groups = conv.groups * m if x.stacked else 1
    y = F.conv2d(x.tensor, weight, bias, conv.stride, conv.padding, conv.dilation, groups)
    return _Value(y, stacked=True)


def _batch_norm(x: _Value, bn: nn.BatchNorm2d, m: int) -> _Value:
    reps = m if x.stacked else 1
    return _Value(
        F.batch_norm(
            x.tensor,
            bn.running_mean.repeat(reps),
            bn.running_var.repeat(reps),
            None if bn.weight is None else bn.weight.repeat(reps),
            None if bn.bias is None else bn.bias.repeat(reps),
            False,
            0.0,
            bn.eps,
        ),
        x.stacked,
    )


def _linear(x: _Value, weight: torch.Tensor, bias: torch.Tensor, m: int) -> torch.Tensor:
    """``(N, m, out)``: shard s's ``weight[s]`` on shard s's features (or on the shared ones)."""
    if x.stacked:
        features = x.tensor.reshape(x.tensor.shape[0], m, -1)
        return torch.einsum("nmf,mof->nmo", features, weight) + bias
    out = x.tensor @ weight.flatten(0, 1).T
    return out.view(x.tensor.shape[0], m, -1) + bias


def channels_last_convolutions(module: fx.GraphModule) -> fx.GraphModule:
    """``module`` with every 4-d convolution's output made channels-last (in place), so the
    poolings and activations after it take their fast kernels. A one-channel input is both
    layouts at once and torch picks NCHW for it, which is why the trunk needs this."""
    modules = dict(module.named_modules())
    for node in list(module.graph.nodes):
        if node.op == "call_module" and isinstance(modules[str(node.target)], nn.Conv2d):
            with module.graph.inserting_after(node):
                fix = module.graph.call_method(
                    "contiguous", (node,), {"memory_format": _CHANNELS_LAST}
                )
            node.replace_all_uses_with(fix, delete_user_cb=lambda user, fix=fix: user is not fix)
    module.recompile()
    return module
