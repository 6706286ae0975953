"""The linearized model f(x; w) = f(x; w0) + J(x) (w - w0), served as an ordinary nn.Module.

Trained in closed form (w - w0 = the ridge solution on D) it is unlearned *exactly* by the NTK
downdate: after deleting D_f its weights equal those of the same linearized model retrained on
D_r. The module has the same parameter names as the network it linearizes (so trainable-name
lists, ``params_touched`` and relearn-time measurements apply unchanged); the selected
parameters hold w, a private copy keeps w0, and every layer stays in eval mode (the
linearization point uses BatchNorm running statistics).

``PseudoLinearizedModel`` serves a pseudo-NTK state (approximate): the kernel machine of
pNTK (x) I_C, f_c(x) = f_c(x; w0) + g(x)^T d_c with g = d (sum_c f_c / sqrt C) / dw at w0 and
one coefficient vector d_c per class.

``temperature`` (1 unless set): the served logits are the linear model's divided by it. A
temperature fitted on D_r (``ntk.deployment.calibrate``) rescales a one-hot fit's nearly flat
softmax; it is a function of the solution and D_r only, so exactness is kept.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from unlearnkit.ntk.jacobian import forward_jvp, twice_differentiable, unfuse_attention
from unlearnkit.ntk.params import ParamSpace


class LinearizedModel(nn.Module):
    """First-order Taylor model around w0 in the directions of the selected parameters."""

    def __init__(
        self,
        base: nn.Module,
        names: list[str],
        w0: Mapping[str, torch.Tensor],
        displacement: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        net = copy.deepcopy(base)
        net.load_state_dict(dict(w0))
        net.eval()
        unfuse_attention(net)  # the fused attention kernel has no forward-mode derivative
        twice_differentiable(net)  # training it differentiates the forward-mode derivative
        object.__setattr__(self, "_net", net)  # not a child: its children become ours below
        for name, child in net.named_children():
            self.add_module(name, child)
        for name, param in net._parameters.items():
            self.register_parameter(name, param)
        for name, buf in net._buffers.items():
            self.register_buffer(name, buf)
        self.space = ParamSpace.from_model(net, names)
        wanted = set(names)
        for name, param in net.named_parameters():
            param.requires_grad_(name in wanted)
        params = dict(net.named_parameters())
        self._w0 = {n: params[n].detach().clone() for n in names}
        self.temperature = 1.0  # served logits = linear model / temperature
        if displacement is not None:
            self.set_displacement(displacement)

    def set_displacement(self, displacement: torch.Tensor) -> None:
        """Set the selected parameters to w0 + displacement (a flat vector over them)."""
        params = dict(self._net.named_parameters())
        with torch.no_grad():
            for n, d in self.space.unflatten(displacement).items():
                params[n].copy_(self._w0[n] + d.to(self._w0[n].dtype))

    def displacement(self) -> torch.Tensor:
        params = dict(self._net.named_parameters())
        return self.space.flatten({n: params[n].detach() - self._w0[n] for n in self.space.names})

    def get_classifier(self) -> nn.Module:
        return self._net.get_classifier()

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        """``.to(device)`` and friends move w0 too (a plain dict, not a buffer: it is no state
        to save), so the model runs on whatever device the runtime places it on."""
        out = super()._apply(fn, recurse)
        self._w0 = {n: fn(t) for n, t in self._w0.items()}
        return out

    def train(self, mode: bool = True) -> LinearizedModel:
        super().train(mode)
        self._net.eval()  # the linearization point: running statistics, always
        return self

    def _linear_part(
        self, x: torch.Tensor
    ) -> tuple[Callable[[dict[str, torch.Tensor]], torch.Tensor], torch.Tensor]:
        """(the logits on ``x`` as a function of the selected parameters alone,
        f(x; w0) + J(x) (w - w0))."""
        params = dict(self._net.named_parameters())
        frozen = {
            k: v.detach()
            for k, v in {**params, **dict(self._net.named_buffers())}.items()
            if k not in self._w0
        }

        def logits(primal: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self._net, {**frozen, **primal}, (x,))

        shift = {n: params[n] - self._w0[n] for n in self.space.names}
        f0, jv = forward_jvp(logits, (self._w0,), (shift,))
        return logits, f0 + jv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._linear_part(x)[1] / self.temperature


class PseudoLinearizedModel(LinearizedModel):
    """The pseudo-NTK kernel machine around w0, plus J(x) (w - w0) for the named parameters.

    As built the named parameters hold w0, so the output is the pNTK solution itself; training
    them (e.g. the relearn-time measurement) moves the model along the exact linearization, as it
    would move a ``LinearizedModel``. The coefficients (C x P, one row per class) are a buffer.
    Costs C + 1 forward-mode passes per call."""

    def __init__(
        self,
        base: nn.Module,
        names: list[str],
        w0: Mapping[str, torch.Tensor],
        coefficients: torch.Tensor,
    ) -> None:
        super().__init__(base, names, w0)
        p = self.space.numel
        if coefficients.dim() != 2 or coefficients.shape[0] != p:
            raise ValueError(
                f"pseudo-NTK coefficients must be ({p}, C), got {tuple(coefficients.shape)}"
            )
        dtype = next(iter(self._w0.values())).dtype
        self.register_buffer("pntk_coefficients", coefficients.T.to(dtype).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, linear = self._linear_part(x)
        classes = self.pntk_coefficients.shape[0]
        cols = []
        for d_c in self.pntk_coefficients:  # g(x)^T d_c = sum over outputs of J(x) d_c / sqrt C
            _, jd = forward_jvp(logits, (self._w0,), (self.space.unflatten(d_c),))
            cols.append(jd.sum(1))
        out = linear + torch.stack(cols, 1) / math.sqrt(classes)
        return out / self.temperature
