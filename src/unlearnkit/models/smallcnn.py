"""A small BatchNorm CNN: three conv blocks for 8x8 digits, four with pooling for 16x16 and up.

Below 16x16 (digits) it is the original network, unchanged: 56,714 parameters at 10 classes and
the same initial weights for a seed, so results measured with it stay valid. From 16x16 on
(Fashion-MNIST's 28x28, CIFAR's 32x32) a max-pool follows the first block until the map is at
most 16x16, then two blocks, a max-pool and a fourth, wider block run before the global average
pool: 131,466 parameters at width 32 and 10 classes, about 14.7M multiply-adds per 28x28 image.
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.registry import MODELS

POOLED_FROM = 16
"""Inputs this size and larger get the four-block layout with early pooling."""


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _early_pools(image_size: int) -> int:
    """How many 2x2 max-pools bring ``image_size`` down to at most 16 (28 -> 14: one)."""
    pools = 0
    while image_size > POOLED_FROM:
        image_size //= 2
        pools += 1
    return pools


class SmallCNN(nn.Module):
    def __init__(
        self, num_classes: int, in_chans: int = 1, width: int = 32, image_size: int = 8
    ) -> None:
        super().__init__()
        if image_size < POOLED_FROM:
            # the original 8x8 network: keep layer order and shapes (they fix the seeded init)
            layers = [
                *_block(in_chans, width),
                *_block(width, 2 * width),
                nn.MaxPool2d(2),
                *_block(2 * width, 2 * width),
            ]
            features = 2 * width
        else:
            layers = [
                *_block(in_chans, width),
                *[nn.MaxPool2d(2) for _ in range(_early_pools(image_size))],
                *_block(width, 2 * width),
                *_block(2 * width, 2 * width),
                nn.MaxPool2d(2),
                *_block(2 * width, 4 * width),
            ]
            features = 4 * width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(features, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@MODELS.register("smallcnn")
def smallcnn(num_classes: int, in_chans: int, image_size: int, width: int = 32) -> nn.Module:
    """A small BatchNorm CNN for 8-32 px images (56,714 parameters on digits).

    ``width``: channels of the first block (the later ones have 2x and, from 16x16, 4x)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise UnlearnkitError(f"smallcnn: width must be a positive integer, got {width!r}")
    return SmallCNN(num_classes, in_chans, width, image_size)
