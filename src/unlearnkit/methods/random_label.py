"""Random-label: train on D_r plus D_f relabelled with random wrong classes."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from unlearnkit.data.base import ArraySplit, concat_splits
from unlearnkit.methods.base import (
    OptimParams,
    UnlearningContext,
    UnlearningMethod,
    register_method,
)


class RandomLabelParams(OptimParams):
    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.01, gt=0, le=10)


def relabel_wrong(split: ArraySplit, num_classes: int, seed: int) -> ArraySplit:
    """Each label replaced by a uniformly drawn *different* class."""
    g = torch.Generator().manual_seed(seed + 31)
    shift = torch.randint(1, num_classes, (len(split),), generator=g)
    return split.with_labels((split.y + shift) % num_classes)


def concat(a: ArraySplit, b: ArraySplit) -> ArraySplit:
    return concat_splits(a, b)


@register_method
class RandomLabel(UnlearningMethod):
    name = "random_label"
    Params = RandomLabelParams
    summary = "fit wrong random labels on the forget set, true labels on the retain set"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        mixed = concat(ctx.retain, relabel_wrong(ctx.forget, ctx.num_classes, ctx.seed))
        return self.fit_steps(ctx, mixed)
