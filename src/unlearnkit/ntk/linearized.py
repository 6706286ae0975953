"""The linearized model f(x) = f(x; w0) + J(x) delta, served as an ordinary nn.Module.

Trained in closed form (delta = the ridge solution on D) it is unlearned *exactly* by the NTK
downdate: after deleting D_f its weights equal those of the same linearized model retrained on
D_r. The backbone copy ``base`` holds w0 (parameters and buffers) and is always in eval mode;
``delta`` is the only parameter (so relearning or fine-tuning it is just training ``delta``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call, jvp

from unlearnkit.ntk.params import ParamSpace


class LinearizedModel(nn.Module):
    """First-order Taylor model around w0 in the directions of the selected parameters."""

    def __init__(self, base: nn.Module, names: list[str], w0: Mapping[str, torch.Tensor],
                 delta: torch.Tensor | None = None) -> None:
        super().__init__()
        self.base = copy.deepcopy(base)
        self.base.load_state_dict(dict(w0))
        self.base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.space = ParamSpace.from_model(self.base, names)
        dtype = next(iter(self.base.parameters())).dtype
        init = torch.zeros(self.space.numel, dtype=dtype) if delta is None else delta.to(dtype)
        self.delta = nn.Parameter(init.detach().clone())

    def trainable_names(self) -> list[str]:
        return ["delta"]

    def get_classifier(self) -> nn.Module:
        return self.base.get_classifier()

    def train(self, mode: bool = True) -> LinearizedModel:
        super().train(mode)
        self.base.eval()  # the linearization point uses running statistics, always
        return self

    def weights(self) -> dict[str, torch.Tensor]:
        """w0 + delta for the selected parameters (the 'nonlinear' reading of this model)."""
        params = dict(self.base.named_parameters())
        return {n: params[n].detach() + d.detach()
                for n, d in self.space.unflatten(self.delta).items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = {**dict(self.base.named_parameters()), **dict(self.base.named_buffers())}
        primal = {n: full[n].detach() for n in self.space.names}
        frozen = {k: v.detach() for k, v in full.items() if k not in primal}
        tangent = self.space.unflatten(self.delta)

        def logits(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.base, {**frozen, **params}, (x,))

        f0, jv = jvp(logits, (primal,), (tangent,))
        return f0 + jv
