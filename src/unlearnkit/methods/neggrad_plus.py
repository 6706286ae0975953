"""NegGrad+: minimise alpha * CE(D_r) - (1 - alpha) * CE(D_f) (Kurmanji et al.)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import (
    OptimParams,
    UnlearningContext,
    UnlearningMethod,
    register_method,
)
from unlearnkit.methods.cycling import cycle_batches
from unlearnkit.training import Batch


class NegGradPlusParams(OptimParams):
    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.01, gt=0, le=10)
    alpha: float = Field(0.99, gt=0, lt=1, description="weight of the retain loss")


@register_method
class NegGradPlus(UnlearningMethod):
    name = "neggrad_plus"
    Params = NegGradPlusParams
    summary = "descent on the retain set, ascent on the forget set, weighted by alpha"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        p = self.params
        forget_stream = cycle_batches(ctx.forget, p.batch_size, ctx.seed)

        def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
            xf, yf, _ = next(forget_stream)
            retain_loss = F.cross_entropy(model(batch[0]), batch[1])
            return p.alpha * retain_loss - (1 - p.alpha) * F.cross_entropy(model(xf), yf)

        return self.fit_steps(ctx, ctx.retain, loss_fn=loss_fn)
