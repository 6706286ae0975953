"""The packed pass: every served shard in one computation, the frozen trunk once per input.

The per-shard loop (``serving.ensemble_logits``) runs the whole network once per live shard,
switching LoRA adapters on a shared backbone. Here each served shard's blocks are *merged* into
per-shard weights of the adapted layers (``W + sum of the active adapters' B A``, peft's own
``get_delta_weight``), stacked along a leading shard axis with the shards' heads, and
``torch.vmap`` over ``torch.func.functional_call`` runs the adapted part for all shards at once
(a batched matmul per Linear, a grouped convolution per Conv2d). The part of the network below
the first adapted layer runs once (``trunk.py``). A convolutional top (convolutions, frozen
batch norms, Linear layers, channel-wise operations) skips ``vmap``: its shards run side by
side in the channel dimension, channels-last, batch norms folded (``grouped.py``; ~2x faster
on the CPU); any other top keeps ``vmap``. The served prefix is the selection: a shard's
merged weights hold exactly the adapters its prefix switches on (S3T: stages 0..p-1; SISA: the
checkpoint of stage p-1), and a dead shard is not stacked at all.

A :class:`PackedView` is immutable: it owns its tensors (a shard's merge is never written once
made), so a deletion or a finished retrain builds a new view and swaps it in while passes on the
old one finish. The :class:`Packer` that builds views caches each shard's merged weights, keyed
by what it serves and the version counters of its blocks' tensors, so a new view re-merges only
the shards that changed; the shard axis is stacked at a view's first pass. Memory: m copies of
the adapted layers (at the default ``adapt``, every layer: m backbones); with ``adapt`` set, m
copies of the top only.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.exact.blocks import Plan
from unlearnkit.exact.grouped import StackedRest, channels_last_convolutions, stackable
from unlearnkit.exact.stack import LoRAStack, build_backbone
from unlearnkit.exact.trunk import TrunkSplit, split_at_adapted, trunk_outputs
from unlearnkit.models.lora import lora_layers
from unlearnkit.runtime.device import current_runtime

Tensors = dict[str, torch.Tensor]


def _vote(logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()


# per-shard output -> what is averaged over shards (the loop's AGGREGATIONS, shard axis first)
PACKED_AGGREGATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean_logits": lambda logits: logits,
    "vote": _vote,
}


class _Network:
    """The bare backbone cut at its first adapted layer, its head, and one lock: passes swap
    stacked parameters into these shared modules (``functional_call``), so one at a time."""

    def __init__(
        self, stack: LoRAStack, spec: Any, backbone_state: Tensors, channel_stacked: bool = True
    ) -> None:
        bare, head = build_backbone(spec, backbone_state)
        adapted = sorted({name for group in stack.groups for name in group})
        self.split: TrunkSplit = split_at_adapted(bare.eval(), adapted)
        self.prefix = "" if self.split.traced else "model."
        self.head = copy.deepcopy(head).eval()
        self.modules = nn.ModuleDict({"trunk": self.split.trunk, "rest": self.split.rest})
        self.modules.add_module("head", self.head)
        for p in self.modules.parameters():
            p.requires_grad_(False)
        rest = self.split.rest
        # convolutional tops run shard-stacked in the channels (grouped.py); others under vmap
        self.grouped = (
            StackedRest(rest, self.prefix)
            if channel_stacked and isinstance(rest, torch.fx.GraphModule) and stackable(rest)
            else None
        )
        if self.grouped is not None and isinstance(self.split.trunk, torch.fx.GraphModule):
            channels_last_convolutions(self.split.trunk)
        self.lock = threading.Lock()


@dataclass(frozen=True)
class PackedView:
    """One served version: which shards, and each one's merged weights and head.

    The shard axis is stacked at the first pass (under the network's lock) and kept: building
    a view after a deletion costs only the touched shard's merge, never an m-fold copy."""

    network: _Network
    shards: tuple[int, ...]
    per_shard: tuple[tuple[Tensors, Tensors], ...]  # (adapted weights, head) of each shard
    aggregation: str

    def __deepcopy__(self, memo: dict[int, Any]) -> PackedView:
        return self  # immutable: a copy of a served model may share it

    @cached_property
    def stacked(self) -> tuple[Tensors, Tensors]:
        """(rest parameter name -> (m, ...) merged weights, head parameter name -> (m, ...));
        for a shard-stacked network, (its stacked parameters, {})."""
        if self.network.grouped is not None:
            return self.network.grouped.weights(self.per_shard), {}
        weights, heads = zip(*self.per_shard, strict=True)
        return (
            {k: torch.stack([w[k] for w in weights]) for k in weights[0]},
            {k: torch.stack([h[k] for h in heads]) for k in heads[0]},
        )

    @torch.no_grad()
    def chunk_rows(self, batch_size: int) -> int:
        """Rows per packed pass for ``batch_size``: all shards at once, so batch / m each."""
        return max(8, batch_size // len(self.shards))

    def logits(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Mean over the shards of each one's (aggregated) output on ``x``. Chunks of
        ``batch_size / m`` rows keep the activations as large as one loop pass's."""
        net, per_shard = self.network, PACKED_AGGREGATIONS[self.aggregation]
        runtime = current_runtime()

        def one_shard(w: Tensors, h: Tensors, *trunk: Any) -> torch.Tensor:
            return functional_call(net.head, h, (functional_call(net.split.rest, w, trunk),))

        rows = self.chunk_rows(batch_size)
        outs = []
        with net.lock:
            stacked_state = self.stacked  # built on the host, from the modules where they live
        with net.lock, runtime.placed(net.modules), runtime.autocast():
            weights, heads = ({k: runtime.tensor(v) for k, v in d.items()} for d in stacked_state)
            for chunk in x.split(rows):
                chunk = runtime.tensor(chunk)
                if net.grouped is not None and chunk.dim() == 4:  # channels-last from the trunk on
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                trunk = trunk_outputs(net.split, chunk)
                if net.grouped is not None:
                    stacked = net.grouped(weights, trunk)
                else:
                    dims = (0, 0) + (None,) * len(trunk)
                    # attention's fused CPU kernels have no vmap rule (torch falls back to a
                    # loop per shard); the math kernel is plain batched matmuls: one pass
                    with sdpa_kernel(SDPBackend.MATH):
                        stacked = torch.vmap(one_shard, in_dims=dims)(weights, heads, *trunk)
                outs.append(runtime.to_cpu(per_shard(stacked.float()).mean(0)))
        return torch.cat(outs)


class Packer:
    """Builds :class:`PackedView` s of one stack, re-merging only shards that changed.

    ``channel_stacked=False`` keeps every network on the ``vmap`` pass (the benchmarks time the
    two side by side)."""

    def __init__(
        self, stack: LoRAStack, spec: Any, backbone_state: Tensors, channel_stacked: bool = True
    ) -> None:
        self.stack, self.spec, self.backbone_state = stack, spec, backbone_state
        self.channel_stacked = channel_stacked
        self._network: _Network | None = None
        self._cache: dict[int, tuple[tuple[Any, ...], Tensors, Tensors]] = {}
        lora = {id(m) for m in lora_layers(stack.backbone)}
        self._layers = {n: m for n, m in stack.backbone.named_modules() if id(m) in lora}

    def __deepcopy__(self, memo: dict[int, Any]) -> Packer:
        """A copied ensemble gets a fresh packer on its own copied stack (nothing cached: the
        copy's tensors have their own version counters)."""
        return Packer(
            copy.deepcopy(self.stack, memo),
            self.spec,
            copy.deepcopy(self.backbone_state, memo),
            self.channel_stacked,
        )

    @property
    def network(self) -> _Network:
        if self._network is None:
            self._network = _Network(
                self.stack, self.spec, self.backbone_state, self.channel_stacked
            )
        return self._network

    def _merged(self, shard: int, seq: int, length: int) -> tuple[Tensors, Tensors]:
        adapters, head = self.stack.prefix(shard, seq, length)
        head_module = self.stack.heads[head]
        touched = [
            (layer, [a for a in adapters if a in layer.lora_A]) for layer in self._layers.values()
        ]
        key = (
            seq,
            length,
            tuple((id(p), p._version) for p in head_module.parameters()),
            tuple(
                (id(t), t._version)
                for layer, active in touched
                for a in active
                for t in (layer.lora_A[a].weight, layer.lora_B[a].weight)
            ),
        )
        hit = self._cache.get(shard)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        prefix = self.network.prefix
        weights = {}
        for (name, layer), (_, active) in zip(self._layers.items(), touched, strict=True):
            w = layer.get_base_layer().weight.detach().clone()
            for a in active:
                w += layer.get_delta_weight(a).detach()
            weights[f"{prefix}{name}.weight"] = w
        heads = {n: p.detach().clone() for n, p in head_module.named_parameters()}
        self._cache[shard] = (key, weights, heads)
        return weights, heads

    def view(self, plan: Plan, aggregation: str) -> PackedView:
        if not plan:
            raise ConflictError("every shard is dead: retrain (retrain_shard) before predicting")
        if aggregation not in PACKED_AGGREGATIONS:
            raise UnlearnkitError(
                f"unknown aggregation {aggregation!r}; choose {' or '.join(PACKED_AGGREGATIONS)}"
            )
        shards = tuple(sorted(plan))
        for gone in set(self._cache) - set(shards):
            del self._cache[gone]
        merged = tuple(self._merged(s, *plan[s]) for s in shards)
        return PackedView(self.network, shards, merged, aggregation)
