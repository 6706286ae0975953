"""L1-sparse (Jia et al.): fine-tune on D_r with an L1 penalty on the weights that move."""

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
from unlearnkit.training import Batch


class L1SparseParams(OptimParams):
    epochs: int = Field(10, ge=1, le=1000)
    lr: float = Field(0.02, gt=0, le=10)
    alpha: float = Field(5e-4, ge=0, description="L1 penalty weight")


@register_method
class L1Sparse(UnlearningMethod):
    name = "l1_sparse"
    Params = L1SparseParams
    summary = "fine-tune on the retain set with an L1 penalty (sparsity aids forgetting)"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        params = dict(ctx.model.named_parameters())
        chosen = [params[n] for n in ctx.trainable]
        alpha = self.params.alpha

        def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
            penalty = sum(p.abs().sum() for p in chosen)
            return F.cross_entropy(model(batch[0]), batch[1]) + alpha * penalty

        return self.fit_steps(ctx, ctx.retain, loss_fn=loss_fn)
