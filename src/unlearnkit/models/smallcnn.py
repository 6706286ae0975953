"""A three-conv BatchNorm CNN sized for 8x8 digits (56,714 parameters at 10 classes)."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.models.registry import MODELS


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(in_chans, width),
            *_block(width, 2 * width),
            nn.MaxPool2d(2),
            *_block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@MODELS.register("smallcnn")
def smallcnn(num_classes: int, in_chans: int, image_size: int, width: int = 32) -> nn.Module:
    return SmallCNN(num_classes, in_chans, width)
