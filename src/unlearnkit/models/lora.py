"""LoRA blocks through peft: which layers get adapters, grouped into L blocks, switched by name.

ViT: LoRA on the q and v projections. timm fuses q, k, v into one ``attn.qkv`` Linear, so the
fused layer is split into three Linears (same weights) and peft adapts ``...qkv.q`` and
``...qkv.v``. Any other model (ResNet, EfficientNet, ConvNeXt, MobileNet, ...): LoRA on every
``nn.Linear`` and ``nn.Conv2d`` but the head, skipping grouped and depthwise convolutions (a
depthwise conv has one input channel per group: a rank-r update of it is not LoRA, and peft
refuses most ranks on it). ``layer_types`` and name ``patterns`` narrow the choice on any model.
The adapted layers, ordered from input to output, are cut into L groups of consecutive layers;
group 0 is the *top* (nearest the head), as S3T trains top-down.

Patterns are shell-style (``fnmatch``) and match a *whole* module name ("features.*.block.0.0",
"layer4.*"); the chosen targets are always exact module names handed to peft as a list (peft
matches a list entry only as the whole name or a dotted suffix), never substrings: "blocks.1"
must not select "blocks.10".
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # peft pulls in transformers (~3 s): imported where LoRA is used
    from peft.tuners.lora import LoraLayer  # deferred: peft pulls in transformers (~1 s)

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.peft import TRAINABLE, head_parameter_names


class SplitQKV(nn.Module):
    """A fused qkv Linear as three Linears, so q and v can carry their own adapters."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        dim = fused.out_features // 3
        with_bias = fused.bias is not None
        self.q, self.k, self.v = (
            nn.Linear(fused.in_features, dim, bias=with_bias) for _ in range(3)
        )
        with torch.no_grad():
            for i, part in enumerate((self.q, self.k, self.v)):
                part.weight.copy_(fused.weight[i * dim : (i + 1) * dim])
                if with_bias:
                    part.bias.copy_(fused.bias[i * dim : (i + 1) * dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def _is_vit(model: nn.Module) -> bool:
    blocks = getattr(model, "blocks", None)
    return isinstance(blocks, nn.Sequential | nn.ModuleList) and all(
        hasattr(getattr(b, "attn", None), "qkv") for b in blocks
    )


def split_qkv(model: nn.Module) -> nn.Module:
    """Replace every ViT block's fused ``attn.qkv`` by a :class:`SplitQKV` (idempotent)."""
    if _is_vit(model):
        for block in model.blocks:
            if isinstance(block.attn.qkv, nn.Linear):
                block.attn.qkv = SplitQKV(block.attn.qkv)
    return model


LAYER_TYPES: dict[str, type[nn.Module]] = {"linear": nn.Linear, "conv2d": nn.Conv2d}
DEFAULT_LAYER_TYPES = ("linear", "conv2d")
_PEFT_PARTS = {"lora_A", "lora_B", "base_layer", "lora_embedding_A", "lora_embedding_B"}


def _grouped(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


def adaptable_layers(
    model: nn.Module, layer_types: Sequence[str] = DEFAULT_LAYER_TYPES
) -> tuple[list[str], list[str]]:
    """(eligible, skipped) module names in model order: layers of ``layer_types`` that are not
    the head nor part of an injected adapter; grouped / depthwise convs go to ``skipped``."""
    unknown = sorted(set(layer_types) - set(LAYER_TYPES))
    if unknown or not layer_types:
        raise UnlearnkitError(
            f"unknown LoRA layer type {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(LAYER_TYPES)}"
        )
    types = tuple(LAYER_TYPES[t] for t in layer_types)
    try:
        head = set(head_parameter_names(model))
    except (UnlearnkitError, AttributeError):  # no head to spare
        head = set()
    eligible, skipped = [], []
    for name, module in model.named_modules():
        if not isinstance(module, types) or _PEFT_PARTS & set(name.split(".")):
            continue
        if any(f"{name}.{p}" in head for p, _ in module.named_parameters(recurse=False)):
            continue
        (skipped if _grouped(module) else eligible).append(name)
    return eligible, skipped


def _matching(names: list[str], skipped: list[str], patterns: Sequence[str]) -> list[str]:
    """The eligible names some pattern matches in full; a pattern matching none is an error."""
    for pattern in patterns:
        if not any(fnmatchcase(n, pattern) for n in names):
            grouped = [n for n in skipped if fnmatchcase(n, pattern)]
            why = (
                f"it matches only grouped / depthwise convs ({', '.join(grouped[:3])}), which "
                "LoRA skips"
                if grouped
                else f"adaptable layers: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}"
            )
            raise UnlearnkitError(f"LoRA target pattern {pattern!r} matches no layer; {why}")
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def lora_units(
    model: nn.Module,
    patterns: Sequence[str] = (),
    layer_types: Sequence[str] = DEFAULT_LAYER_TYPES,
) -> list[list[str]]:
    """Adaptable units from input to output: one per ViT block (its q and v) by default on a
    ViT, else one per chosen Linear / Conv2d layer (``patterns`` narrow them by name).

    For a ViT the model must have gone through :func:`split_qkv`.
    """
    if _is_vit(model) and not patterns and tuple(layer_types) == DEFAULT_LAYER_TYPES:
        units = []
        for i, block in enumerate(model.blocks):
            if not isinstance(block.attn.qkv, SplitQKV):
                raise UnlearnkitError("call split_qkv(model) before selecting ViT LoRA targets")
            units.append([f"blocks.{i}.attn.qkv.q", f"blocks.{i}.attn.qkv.v"])
        return units
    names, skipped = adaptable_layers(model, layer_types)
    if patterns:
        names = _matching(names, skipped, patterns)
    if not names:
        kinds = " / ".join(LAYER_TYPES[t].__name__ for t in layer_types)
        raise UnlearnkitError(
            f"model has no {kinds} layer to put LoRA on (besides the head"
            f"{'; grouped / depthwise convs are skipped' if skipped else ''})"
        )
    return [[n] for n in names]


def adapted_units(units: Sequence[Sequence[str]], adapt: int | str | None) -> list[list[str]]:
    """The units the blocks adapt: all (``None``), the last ``adapt`` (an int: the ones nearest
    the head), or those with a layer whose whole name matches the pattern ``adapt``. Every layer
    below the first adapted one is frozen and shared by all shards (the trunk)."""
    if adapt is None:
        return [list(u) for u in units]
    if isinstance(adapt, int):
        if not 1 <= adapt <= len(units):
            raise UnlearnkitError(
                f"adapt = {adapt}: the model has {len(units)} adaptable layers; "
                f"choose 1..{len(units)}"
            )
        return [list(u) for u in units[-adapt:]]
    chosen = [list(u) for u in units if any(fnmatchcase(n, adapt) for n in u)]
    if not chosen:
        names = [n for u in units for n in u]
        raise UnlearnkitError(
            f"adapt = {adapt!r} matches no adaptable layer; they are "
            f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}"
        )
    return chosen


def group_units(units: Sequence[Sequence[str]], num_blocks: int) -> list[list[str]]:
    """Cut the units into ``num_blocks`` runs of consecutive units; index 0 is the top run.

    With more blocks than units (a 3-conv CNN and L = 4), consecutive blocks share a unit, each
    with its own adapter; blocks stay ordered from the top down.
    """
    if num_blocks < 1 or not units:
        raise UnlearnkitError(
            f"need >= 1 LoRA block and >= 1 adaptable layer, got "
            f"{num_blocks} blocks and {len(units)} layers"
        )
    if num_blocks <= len(units):
        runs = np.array_split(np.arange(len(units)), num_blocks)
    else:
        runs = [np.array([k * len(units) // num_blocks]) for k in range(num_blocks)]
    return [[name for u in run for name in units[u]] for run in reversed(runs)]


def inject_lora(
    model: nn.Module, adapter: str, targets: Sequence[str], rank: int = 16, alpha: float = 16.0
) -> None:
    """Add adapter ``adapter`` on exactly the modules named in ``targets``; verify that."""
    from peft import LoraConfig, inject_adapter_in_model  # deferred: peft is slow to import
    from peft.tuners.lora import LoraLayer  # deferred: peft pulls in transformers (~1 s)

    # one anchored pattern, not a list: peft matches list entries by name suffix, so a top-level
    # "conv1" would also catch every "layerN.M.conv1" of a ResNet (found by the architecture matrix)
    exact = "|".join(re.escape(name) for name in targets)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=f"^(?:{exact})$", bias="none"
    )
    with warnings.catch_warnings():  # several named adapters on one model is the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=adapter)
    got = {
        name
        for name, m in model.named_modules()
        if isinstance(m, LoraLayer) and adapter in m.lora_A
    }
    if got != set(targets):
        raise RuntimeError(
            f"LoRA adapter {adapter!r} landed on {sorted(got)}, wanted exactly {sorted(targets)}"
        )


def lora_layers(model: nn.Module) -> list[LoraLayer]:
    from peft.tuners.lora import LoraLayer  # deferred: peft pulls in transformers (~1 s)

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def set_active_adapters(layers: Iterable[LoraLayer], names: Sequence[str]) -> None:
    """Switch on exactly ``names`` in every LoRA layer (names a layer lacks are skipped)."""
    active = list(names)
    for layer in layers:
        layer._active_adapter = active  # set_adapter would also flip requires_grad; we own that


def parameter_names_by_adapter(model: nn.Module) -> dict[str, list[str]]:
    """Every adapter's parameter names, keyed by the exact name component after lora_A/B, in
    one pass over the model (a stack of many blocks asks for all of them: one pass per block
    was quadratic)."""
    out: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in ("lora_A", "lora_B"):
                out.setdefault(parts[i + 1], []).append(name)
                break
    return out


@torch.no_grad()
def reset_adapter(model: nn.Module, adapter: str, generator: torch.Generator) -> None:
    """LoRA's initialisation (A Kaiming-uniform, B zero) drawn from ``generator``: each block's
    start depends only on its own seed, not on what was built or trained before."""
    for layer in lora_layers(model):
        if adapter in layer.lora_A:
            nn.init.kaiming_uniform_(
                layer.lora_A[adapter].weight, a=math.sqrt(5), generator=generator
            )
            nn.init.zeros_(layer.lora_B[adapter].weight)


@TRAINABLE.register("lora")
def lora_and_head(model: nn.Module) -> list[str]:
    """Every LoRA adapter parameter plus the classifier head (after :func:`inject_lora`)."""
    chosen = set(head_parameter_names(model))
    chosen.update(n for n, _ in model.named_parameters() if ".lora_A." in n or ".lora_B." in n)
    if len(chosen) == len(head_parameter_names(model)):
        raise UnlearnkitError(
            "trainable mode 'lora' needs a model with LoRA adapters injected "
            "(unlearnkit.models.lora.inject_lora)"
        )
    return [name for name, _ in model.named_parameters() if name in chosen]
