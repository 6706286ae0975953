"""Retrain: the reference. Same recipe and seed as the original, on D_r, from the same start."""

from __future__ import annotations

from torch import nn

from unlearnkit.methods.base import NoParams, UnlearningContext, UnlearningMethod, register_method
from unlearnkit.training import train


@register_method
class Retrain(UnlearningMethod):
    name = "retrain"
    Params = NoParams
    summary = "train from the pre-training start on the retain set only (the gold standard)"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        model = ctx.fresh_model()
        return train(model, ctx.retain, ctx.train_config, ctx.trainable)
