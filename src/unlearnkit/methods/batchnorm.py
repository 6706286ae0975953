"""What an unlearning method does with BatchNorm running statistics: an explicit, recorded choice.

BatchNorm's running mean and variance are not parameters: no optimiser moves them, yet every
train-mode forward pass overwrites them (momentum 0.1: one epoch of 66 single-class batches
replaces ~99.9% of them). A method that trains on D_f batches in train mode can therefore
"forget" through its statistics rather than its weights, and a method that never runs a
train-mode pass keeps statistics computed on all of D, D_f included. The policy names which:

- ``frozen``: BatchNorm in eval mode while the method trains; the statistics stay the
  original's (computed on D, D_f included);
- ``updated``: train mode, the statistics follow the method's own batches (the behaviour before
  this choice existed);
- ``recompute``: train as ``updated``, then reset the statistics and recompute them on D_r alone
  with gradient-free forward passes (an exact average over D_r, nothing of D_f left).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from unlearnkit.data.base import ArraySplit

BNMode = Literal["frozen", "updated", "recompute"]
BN_MODES: tuple[str, ...] = ("frozen", "updated", "recompute")
DEFAULT_BN_MODE: BNMode = "recompute"  # chosen by measurement: docs/algorithms.md §5.3


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, data: ArraySplit, batch_size: int = 256) -> int:
    """Reset every BatchNorm layer's running statistics and recompute them on ``data``.

    Only the BatchNorm layers run in train mode (dropout and the rest stay in eval mode), with
    momentum None, so the result is the plain average of the batch statistics over ``data``:
    it depends on ``data`` alone, not on what the layers held before. Returns the number of
    layers recomputed (0 for a model without BatchNorm, which is left untouched)."""
    layers = batchnorm_layers(model)
    if not layers or len(data) == 0:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    saved = [(m, m.momentum) for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    chunks = list(torch.arange(len(data)).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:  # BatchNorm cannot normalise one sample
        last = chunks.pop()
        chunks[-1] = torch.cat([chunks[-1], last])
    try:
        for chunk in chunks:  # a batch loaded at a time: the inputs are never all held
            model(data.samples.load(chunk))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        for m, training in modes:  # each module's own mode, as it was
            m.training = training
    return len(layers)
