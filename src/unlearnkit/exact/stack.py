"""One frozen backbone carrying many named LoRA blocks and one small head per block.

Block (shard s, sequence b, stage k) is adapter ``s{s}_q{b}_k{k}`` plus head of the same name.
Serving a prefix switches a set of adapters on and picks one head; nothing is copied, so B
sequences (and all shards, when serving) share one backbone and a block costs only its LoRA
weights and head.

Two schemes share this machinery:
- S3T: stage k adapts the k-th layer group from the top; prefix p = adapters 0..p-1, head p-1.
- SISA: every stage adapts all layers (one PEFT model per shard); stage k is the checkpoint after
  slice k; prefix p = adapter p-1 alone, head p-1.

A :class:`StackSpec` (the backbone's :class:`~unlearnkit.models.Architecture` plus the blocks'
LoRA rank and alpha) is all a worker needs to rebuild the stack.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import Architecture, find_head
from unlearnkit.models.lora import (
    DEFAULT_LAYER_TYPES,
    adapted_units,
    group_units,
    inject_lora,
    lora_layers,
    lora_units,
    parameter_names_by_adapter,
    set_active_adapters,
    split_qkv,
)

Scheme = Literal["s3t", "sisa"]


def block_name(shard: int, seq: int, stage: int) -> str:
    return f"s{shard}_q{seq}_k{stage}"


@dataclass(frozen=True)
class StackSpec(Architecture):
    """The backbone's :class:`~unlearnkit.models.Architecture` plus the LoRA rank and alpha of
    every block and which layers carry it (``lora_targets``: whole-name patterns, empty for the
    default; ``lora_layers``: module types): enough to rebuild a stack anywhere (a Ray worker, a
    reloaded state). ``adapt`` narrows them to the top of the network (see
    :func:`~unlearnkit.models.lora.adapted_units`): what lies below runs once per input."""

    rank: int = 16
    alpha: float = 16.0
    lora_targets: tuple[str, ...] = ()
    lora_layers: tuple[str, ...] = DEFAULT_LAYER_TYPES
    adapt: int | str | None = None

    @classmethod
    def of(
        cls,
        architecture: Architecture,
        rank: int = 16,
        alpha: float = 16.0,
        lora_targets: Sequence[str] = (),
        lora_layers: Sequence[str] = DEFAULT_LAYER_TYPES,
        adapt: int | str | None = None,
    ) -> StackSpec:
        return cls(
            **architecture.to_dict(),
            rank=rank,
            alpha=alpha,
            lora_targets=tuple(lora_targets),
            lora_layers=tuple(lora_layers),
            adapt=adapt,
        )

    @property
    def architecture(self) -> Architecture:
        return Architecture(**Architecture.to_dict(self))

    def units(self, model: nn.Module) -> list[list[str]]:
        """The adaptable units of ``model`` (after :func:`split_qkv`) this spec chooses."""
        return adapted_units(lora_units(model, self.lora_targets, self.lora_layers), self.adapt)

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "rank": self.rank,
            "alpha": self.alpha,
            "lora_targets": list(self.lora_targets),
            "lora_layers": list(self.lora_layers),
            "adapt": self.adapt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackSpec:
        """Read ``to_dict``'s output; older ensembles stored the same keys as ``ModelSpec``."""
        try:
            return cls(
                name=str(data["name"]),
                num_classes=int(data["num_classes"]),
                in_chans=int(data["in_chans"]),
                image_size=int(data["image_size"]),
                options=dict(data.get("options", {})),
                rank=int(data.get("rank", 16)),
                alpha=float(data.get("alpha", 16.0)),
                # stacks saved before targets were configurable used the defaults
                lora_targets=tuple(map(str, data.get("lora_targets", ()))),
                lora_layers=tuple(map(str, data.get("lora_layers", DEFAULT_LAYER_TYPES))),
                adapt=_adapt(data.get("adapt")),  # saved before adapt existed: every layer
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnlearnkitError(f"stack record {data!r} is malformed: {exc}") from None


def _adapt(value: Any) -> int | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"adapt must be an int, a pattern or null, not {value!r}")
    return value


def stage_groups(
    spec: StackSpec, scheme: Scheme, units: list[list[str]], num_stages: int
) -> list[list[str]]:
    """The layers each stage adapts. S3T: disjoint runs of units, top first (with ``adapt``
    set, fewer units than stages is refused: S3T needs one disjoint group per stage); SISA:
    every unit at every stage."""
    if scheme != "s3t":
        return [[n for u in units for n in u]] * num_stages
    if spec.adapt is not None and len(units) < num_stages:
        raise UnlearnkitError(
            f"adapt = {spec.adapt!r} leaves {len(units)} adaptable layers for "
            f"{num_stages} S3T stages; each stage needs its own disjoint layer group: adapt at "
            f"least {num_stages} layers or use fewer slices"
        )
    return group_units(units, num_stages)


def build_backbone(
    spec: Architecture, state: dict[str, torch.Tensor]
) -> tuple[nn.Module, nn.Linear]:
    """The backbone with ``state`` loaded, its head replaced by Identity; returns the old head."""
    model = spec.build()
    model.load_state_dict(state)
    split_qkv(model)
    found = find_head(model)
    head = found.module
    if found.path:
        parent_name, _, child = found.path.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.Identity())
    return model, head


def check_blocks(spec: StackSpec, scheme: Scheme, num_stages: int) -> list[list[str]]:
    """Build the bare model once to fail early (unknown model, nothing to adapt, a target
    pattern that matches nothing)."""
    model = split_qkv(spec.build())
    return stage_groups(spec, scheme, spec.units(model), num_stages)[
        : 1 if scheme == "sisa" else None
    ]


class LoRAStack(nn.Module):
    """Backbone + blocks for some shards; ``forward(x, adapters, head)``."""

    def __init__(
        self,
        spec: StackSpec,
        backbone_state: dict[str, torch.Tensor],
        scheme: Scheme,
        num_stages: int,
        shards: Iterable[int],
        num_sequences: int,
    ) -> None:
        super().__init__()
        self.scheme = scheme
        self.num_stages = num_stages
        self.backbone, base_head = build_backbone(spec, backbone_state)
        # where first-stage heads start (head_init="backbone"); a plain dict, not a parameter
        self.base_head_state = {k: v.detach().clone() for k, v in base_head.state_dict().items()}
        groups = stage_groups(spec, scheme, spec.units(self.backbone), num_stages)
        self.groups = groups
        self.heads = nn.ModuleDict()
        for s in shards:
            for b in range(num_sequences):
                for k in range(num_stages):
                    name = block_name(s, b, k)
                    inject_lora(self.backbone, name, groups[k], spec.rank, spec.alpha)
                    self.heads[name] = copy.deepcopy(base_head)
        for p in self.parameters():
            p.requires_grad_(False)
        self._layers = lora_layers(self.backbone)
        self.eval()  # the backbone is frozen: BatchNorm statistics must not move either

    def prefix(self, shard: int, seq: int, length: int) -> tuple[list[str], str]:
        """(active adapters, head) serving the first ``length`` stages of a sequence."""
        if length < 1:
            raise ValueError("a prefix needs at least one stage")
        names = [block_name(shard, seq, k) for k in range(length)]
        return (names if self.scheme == "s3t" else names[-1:]), names[-1]

    def forward(self, x: torch.Tensor, adapters: Sequence[str], head: str) -> torch.Tensor:
        set_active_adapters(self._layers, adapters)
        return self.heads[head](self.backbone(x))

    def block_parameter_names(
        self, name: str, by_adapter: dict[str, list[str]] | None = None
    ) -> list[str]:
        """The parameters of one block: its adapter and its head. ``by_adapter``: the
        backbone's ``parameter_names_by_adapter``, when asking for many blocks at once."""
        if by_adapter is None:
            by_adapter = parameter_names_by_adapter(self.backbone)
        adapter = [f"backbone.{n}" for n in by_adapter.get(name, [])]
        return adapter + [f"heads.{name}.{n}" for n, _ in self.heads[name].named_parameters()]

    def block_state(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Copies of the named blocks' tensors (one pass over the model for all of them)."""
        params = dict(self.named_parameters())
        by_adapter = parameter_names_by_adapter(self.backbone)
        return {
            p: params[p].detach().clone()
            for n in names
            for p in self.block_parameter_names(n, by_adapter)
        }

    @torch.no_grad()
    def load_blocks(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        for key, value in state.items():
            params[key].copy_(value)
