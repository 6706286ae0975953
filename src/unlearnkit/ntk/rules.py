"""Per-sample gradients of the PEFT parameters from one batched forward and backward pass.

In eval mode every sample's logits depend on that sample alone, so the gradient of the *summed*
logit c with respect to an activation is, row by row, the per-sample gradient at that
activation. The per-sample gradient of a parameter then follows from its layer's own formula:

- head (the classifier ``nn.Linear`` whose output is the logits): analytic, no backward at all:
  d logit_c / d W[c', f] = [c = c'] phi_f, d logit_c / d b[c'] = [c = c'] (phi: head input);
- normalisation affine (``y = gamma * xhat + beta``; BatchNorm* and timm's BatchNormAct2d in eval
  with running statistics, LayerNorm, timm's LayerNorm2d, GroupNorm and timm's ``*Act``
  variants): d/d gamma = sum over the positions a gamma entry scales of (dL/dy * xhat) and
  d/d beta = sum of dL/dy, with xhat recomputed from the layer's input and dL/dy taken at the
  affine output (the module's output, or the input of the ``drop`` of an ``*Act`` layer);
- visual prompts (``VisualPromptViT``): the prompt tokens are copied into fixed token slots of a
  block's input, so their gradient is the gradient at those slots.

A *tap* hooks its module, keeps the activations it needs (the graph tensors to differentiate
and the detached forward quantities) and turns the activation gradients into per-sample
parameter gradients. Parameters no rule covers go through the reference per-sample path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.layers import (
    BatchNormAct2d,
    GroupNorm1,
    GroupNorm1Act,
    GroupNormAct,
    LayerNorm2d,
    LayerNormAct,
    LayerNormAct2d,
)
from timm.layers import GroupNorm as TimmGroupNorm
from timm.layers import LayerNorm as TimmLayerNorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.hooks import RemovableHandle

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.peft import head_parameter_names
from unlearnkit.models.prompts import PROMPT_PARAM, VisualPromptViT
from unlearnkit.ntk.params import ParamSpace


class Tap(ABC):
    """Captures activations of one module during the forward pass (one list entry per call)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names  # the module's attribute -> the parameter's full name
        self.graph: list[torch.Tensor] = []  # tensors whose gradients are needed
        self.saved: list[Any] = []  # detached forward quantities, one per call

    @abstractmethod
    def install(self) -> list[RemovableHandle]: ...

    def reset(self) -> None:
        self.graph, self.saved = [], []

    @abstractmethod
    def per_sample(self, grads: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Per-sample gradients (n, *shape) of this tap's parameters from ``grads`` (one per
        graph tensor, in capture order; None where the tensor did not reach the logits)."""


# -- normalisation layers ----------------------------------------------------------------------
def _running_xhat(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """BatchNorm in eval: the running statistics functional_call put in place (channel dim 1)."""
    shape = [1, -1] + [1] * (a.dim() - 2)
    return (a - module.running_mean.view(shape)) * torch.rsqrt(
        module.running_var.view(shape) + module.eps
    )


def _standardise(a: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    var, mean = torch.var_mean(a, dim=dims, correction=0, keepdim=True)
    return (a - mean) * torch.rsqrt(var + eps)


def _layer_xhat(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """LayerNorm: over the trailing ``normalized_shape`` dimensions of each sample."""
    k = len(module.normalized_shape)
    return _standardise(a, tuple(range(a.dim() - k, a.dim())), module.eps)


def _layer2d_xhat(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """timm's LayerNorm2d: over the channels (dim 1) at each position of an NCHW map."""
    return _standardise(a, (1,), module.eps)


def _group_xhat(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """GroupNorm: over each group of channels and all positions of each sample."""
    grouped = a.reshape(a.shape[0], module.num_groups, -1)
    return _standardise(grouped, (2,), module.eps).reshape(a.shape)


def _has_running_stats(module: nn.Module) -> bool:
    return (
        getattr(module, "track_running_stats", False)
        and module.running_mean is not None
        and module.running_var is not None
    )


@dataclass(frozen=True)
class NormRule:
    """How one kind of normalisation layer normalises, and where its affine output is."""

    xhat: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # detached input -> affine input
    trailing: bool = False  # gamma indexes the trailing dims (LayerNorm), else channel dim 1
    act: bool = False  # timm's *Act layers: the affine output is the input of ``module.drop``
    needs_running_stats: bool = False


# Keyed by the exact forward function: a subclass that overrides forward gets no rule (it may
# compute something else) and goes through the reference path instead.
NORM_RULES: dict[Callable[..., Any], NormRule] = {
    _BatchNorm.forward: NormRule(_running_xhat, needs_running_stats=True),
    BatchNormAct2d.forward: NormRule(_running_xhat, act=True, needs_running_stats=True),
    nn.LayerNorm.forward: NormRule(_layer_xhat, trailing=True),
    TimmLayerNorm.forward: NormRule(_layer_xhat, trailing=True),
    LayerNormAct.forward: NormRule(_layer_xhat, trailing=True, act=True),
    LayerNorm2d.forward: NormRule(_layer2d_xhat),
    LayerNormAct2d.forward: NormRule(_layer2d_xhat, act=True),
    nn.GroupNorm.forward: NormRule(_group_xhat),
    TimmGroupNorm.forward: NormRule(_group_xhat),
    GroupNorm1.forward: NormRule(_group_xhat),
    GroupNormAct.forward: NormRule(_group_xhat, act=True),
    GroupNorm1Act.forward: NormRule(_group_xhat, act=True),
}


def norm_rule(module: nn.Module) -> NormRule | None:
    """The batched rule for this normalisation layer, or None (no rule: reference path)."""
    rule = NORM_RULES.get(type(module).forward)
    if rule is None or (rule.needs_running_stats and not _has_running_stats(module)):
        return None
    if rule.act and not isinstance(getattr(module, "drop", None), nn.Module):
        return None
    return rule


def plain_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm whose forward is the stock one, with running statistics to use in eval."""
    return isinstance(module, _BatchNorm) and norm_rule(module) is NORM_RULES[_BatchNorm.forward]


class NormTap(Tap):
    """Affine parameters of a normalisation layer: the affine output's gradient times xhat."""

    def __init__(self, module: nn.Module, rule: NormRule, names: dict[str, str]) -> None:
        super().__init__(names)
        self.module = module
        self.rule = rule

    def install(self) -> list[RemovableHandle]:
        handles = [self.module.register_forward_hook(self._save_xhat)]
        if self.rule.act:  # the affine output enters drop (then act): take it there
            handles.append(self.module.drop.register_forward_pre_hook(self._take_input))
        return handles

    def _save_xhat(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        self.saved.append(self.rule.xhat(module, inputs[0].detach()))
        if self.rule.act:
            return None
        self.graph.append(output)
        return output.clone()  # a later in-place op (ReLU(inplace=True)) must not touch `output`

    def _take_input(self, drop: nn.Module, args: tuple[Any, ...]) -> Any:
        self.graph.append(args[0])
        return (args[0].clone(), *args[1:])

    def per_sample(self, grads: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for grad, xhat in zip(grads, self.saved, strict=True):
            if grad is None:
                continue
            if self.rule.trailing:  # gamma covers the last k dims; sum over the positions
                k = len(self.module.normalized_shape)
                dims = tuple(range(1, grad.dim() - k))
            else:  # gamma indexes the channels (dim 1)
                dims = tuple(range(2, grad.dim()))
            parts = {"weight": (grad * xhat).sum(dims), "bias": grad.sum(dims)}
            for attr, name in self.names.items():
                out[name] = out[name] + parts[attr] if name in out else parts[attr]
        return out


class PromptTap(Tap):
    """Visual prompt tokens: the gradient at their slots of the blocks they are inserted into."""

    def __init__(self, module: VisualPromptViT, name: str) -> None:
        super().__init__({PROMPT_PARAM: name})
        self.module = module
        self.sets = int(module.prompts.shape[0])

    def install(self) -> list[RemovableHandle]:
        blocks = self.module.vit.blocks
        return [blocks[i].register_forward_pre_hook(self._hook) for i in range(self.sets)]

    def _hook(self, block: nn.Module, args: tuple[Any, ...]) -> Any:
        self.graph.append(args[0])
        return (args[0].clone(), *args[1:])

    def per_sample(self, grads: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        if len(grads) != self.sets:
            raise RuntimeError(f"expected {self.sets} prompted blocks, saw {len(grads)}")
        start = self.module.vit.num_prefix_tokens
        stop = start + self.module.num_prompts
        width = self.module.prompts.shape[-1]
        sets = []
        for grad in grads:
            if grad is None:
                n = self.graph[0].shape[0]
                grad = self.graph[0].new_zeros(n, stop, width)
            sets.append(grad[:, start:stop])
        return {self.names[PROMPT_PARAM]: torch.stack(sets, dim=1)}


@dataclass
class HeadTap:
    """The classifier head: its input phi and output, for the analytic block."""

    module: nn.Linear
    names: dict[str, str]  # "weight" / "bias" -> full name
    phi: torch.Tensor | None = None
    output: torch.Tensor | None = None
    calls: int = 0

    def install(self) -> list[RemovableHandle]:
        return [self.module.register_forward_hook(self._hook)]

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        self.phi, self.output = inputs[0].detach(), output
        self.calls += 1

    def reset(self) -> None:
        self.phi, self.output, self.calls = None, None, 0

    def usable(self, logits: torch.Tensor) -> bool:
        """The analytic block holds only if the logits *are* the head's output, taken once on
        a (n, features) input."""
        return (
            self.calls == 1
            and self.output is logits
            and self.phi is not None
            and self.phi.dim() == 2
        )


@dataclass
class JacobianPlan:
    """Which parameters come from which rule; ``generic`` ones from the reference path."""

    head: HeadTap | None
    taps: list[Tap]
    generic: list[str] = field(default_factory=list)

    @property
    def covered(self) -> set[str]:
        names = {n for tap in self.taps for n in tap.names.values()}
        return names | (set(self.head.names.values()) if self.head else set())

    @contextmanager
    def installed(self) -> Iterator[JacobianPlan]:
        handles: list[RemovableHandle] = []
        for tap in [*self.taps, *([self.head] if self.head else [])]:
            tap.reset()
            handles += tap.install()
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def graph_tensors(self) -> list[torch.Tensor]:
        return [t for tap in self.taps for t in tap.graph]

    def per_sample(self, grads: tuple[torch.Tensor | None, ...]) -> dict[str, torch.Tensor]:
        """Split the gradients by tap (capture order) and apply each tap's rule."""
        out: dict[str, torch.Tensor] = {}
        at = 0
        for tap in self.taps:
            k = len(tap.graph)
            out.update(tap.per_sample(list(grads[at : at + k])))
            at += k
        return out


def _owner(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr


def head_module(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(path, module) of the classifier head as the trainable modes find it
    (``head_parameter_names``: timm's ``get_classifier`` and whatever else it learns), or None
    when there is none or its parameters span several modules."""
    try:
        names = head_parameter_names(model)
    except (UnlearnkitError, AttributeError):
        return None
    paths = {name.rpartition(".")[0] for name in names}
    if len(paths) != 1:
        return None
    path = paths.pop()
    return path, model.get_submodule(path)


def jacobian_plan(model: nn.Module, space: ParamSpace) -> JacobianPlan:
    """Assign every parameter of ``space`` to the head, a normalisation or prompt tap, or the
    reference path (anything else: convolutions, attention weights, RmsNorm, ...)."""
    modules = dict(model.named_modules())
    wanted = list(space.names)
    head: HeadTap | None = None
    found = head_module(model)
    if found is not None and isinstance(found[1], nn.Linear):
        path, classifier = found
        prefix = f"{path}." if path else ""
        names = {a: prefix + a for a in ("weight", "bias") if prefix + a in wanted}
        if names:
            head = HeadTap(classifier, names)
    taps: list[Tap] = []
    by_module: dict[str, dict[str, str]] = {}
    for name in wanted:
        if head is not None and name in head.names.values():
            continue
        path, attr = _owner(name)
        by_module.setdefault(path, {})[attr] = name
    generic: list[str] = []
    for path, attrs in by_module.items():
        module = modules.get(path)
        rule = norm_rule(module) if module is not None else None
        if rule is not None and set(attrs) <= {"weight", "bias"}:
            taps.append(NormTap(module, rule, attrs))
        elif isinstance(module, VisualPromptViT) and set(attrs) == {PROMPT_PARAM}:
            taps.append(PromptTap(module, attrs[PROMPT_PARAM]))
        else:
            generic += attrs.values()
    order = {n: i for i, n in enumerate(wanted)}
    return JacobianPlan(head, taps, sorted(generic, key=order.__getitem__))
