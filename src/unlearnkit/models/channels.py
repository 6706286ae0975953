"""The first convolution, fitted to the data's channels (1 for digits and MNIST, 3 for RGB).

Libraries without an ``in_chans`` argument (torchvision, a user's factory) build a 3-channel
first convolution; it is rebuilt for the data's channel count with its weights folded the way
timm folds pretrained RGB filters (``adapt_input_conv``: summed over RGB for one channel,
repeated and rescaled for more). A 3-channel checkpoint loads into it the same way.
"""

from __future__ import annotations

import torch
from timm.models import adapt_input_conv
from torch import nn


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``nn.Conv2d`` in module order (the one that sees the image) and its path."""
    return next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def fold_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Conv filters ``out x C x k x k`` refitted to ``in_chans`` input channels."""
    return adapt_input_conv(in_chans, weight.float()).to(weight.dtype)


def adapt_first_conv(model: nn.Module, in_chans: int) -> bool:
    """Rebuild the first convolution for ``in_chans`` channels; True if it changed."""
    found = first_conv(model)
    if found is None or found[1].in_channels == in_chans or found[1].groups != 1:
        return False
    path, old = found
    new = nn.Conv2d(
        in_chans,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(fold_channels(old.weight, in_chans))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, new)
    return True
