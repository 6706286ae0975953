"""SalUn (Fan et al.): random-label unlearning restricted to the salient weights.

Saliency is the *magnitude* of the forget-loss gradient (the public RUM code dropped the
absolute value, which selects by sign instead); the top ``saliency_fraction`` of entries of the
trainable parameters are salient and are the only ones allowed to change.
"""

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
from unlearnkit.methods.random_label import concat, relabel_wrong
from unlearnkit.runtime.device import current_runtime
from unlearnkit.training import Callback, TrainState


class SalUnParams(OptimParams):
    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.01, gt=0, le=10)
    saliency_fraction: float = Field(0.5, gt=0, le=1, description="share of weights updated")


def saliency_masks(
    model: nn.Module, ctx: UnlearningContext, fraction: float
) -> dict[str, torch.Tensor]:
    """Boolean masks, one per trainable parameter: the top ``fraction`` by |grad CE(D_f)|."""
    params = dict(model.named_parameters())
    model.eval()
    model.zero_grad(set_to_none=True)
    runtime = current_runtime()
    for x, y in zip(ctx.forget.samples.batches(256), ctx.forget.y.split(256), strict=True):
        x, y = runtime.batch(x, y)
        with runtime.autocast():
            loss = F.cross_entropy(model(x), y, reduction="sum")
        loss.backward()
    magnitudes = {n: params[n].grad.detach().abs() for n in ctx.trainable}
    model.zero_grad(set_to_none=True)
    flat = torch.cat([m.flatten() for m in magnitudes.values()])
    k = max(1, round(fraction * flat.numel()))
    threshold = torch.topk(flat, k).values.min()
    return {n: m >= threshold for n, m in magnitudes.items()}


class KeepUnmasked(Callback):
    """After every step, put non-salient entries back (momentum and weight decay included)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self.targets = [(params[n], m, params[n].detach().clone()) for n, m in masks.items()]

    @torch.no_grad()
    def on_batch_end(self, state: TrainState) -> None:
        for param, mask, original in self.targets:
            param.copy_(torch.where(mask, param, original))


@register_method
class SalUn(UnlearningMethod):
    name = "salun"
    Params = SalUnParams
    summary = "random-label training on the weights most salient for the forget loss"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        # on the device throughout: the masks and the kept weights live beside the parameters
        with current_runtime().placed(ctx.model):
            masks = saliency_masks(ctx.model, ctx, self.params.saliency_fraction)
            mixed = concat(ctx.retain, relabel_wrong(ctx.forget, ctx.num_classes, ctx.seed))
            return self.fit_steps(ctx, mixed, callbacks=[KeepUnmasked(ctx.model, masks)])
