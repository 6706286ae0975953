"""Retrain: the reference. Same recipe and seed as the original, on D_r, from the same start;
the BatchNorm policy does not apply to it (its statistics come from D_r alone)."""

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

    def finish_batchnorm(self, model: nn.Module, ctx: UnlearningContext) -> nn.Module:
        """The reference follows the original's recipe (train-mode BatchNorm on D_r, so its
        statistics hold nothing of D_f) under every policy: the policy is the methods'."""
        return model
