"""Fine-tune: keep training on D_r only, relying on catastrophic forgetting of D_f."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from unlearnkit.methods.base import (
    OptimParams,
    UnlearningContext,
    UnlearningMethod,
    register_method,
)


class FinetuneParams(OptimParams):
    epochs: int = Field(10, ge=1, le=1000)
    lr: float = Field(0.02, gt=0, le=10)


@register_method
class Finetune(UnlearningMethod):
    name = "finetune"
    Params = FinetuneParams
    summary = "a few epochs of SGD on the retain set"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        return self.fit_steps(ctx, ctx.retain)
