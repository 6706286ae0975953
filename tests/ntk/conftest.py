"""Tiny float64 models and data for exact checks of the NTK engine."""

from __future__ import annotations

import pytest
import torch
from ntk_helpers import perturbed_bn, w0_of
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.models import create_model, select_trainable


class TinyBNNet(nn.Module):
    """Conv + BatchNorm + head: nonlinear in the BN affine parameters."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.tanh(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # after the root conftest's 2: two threads spin on a shared box


@pytest.fixture
def tiny() -> tuple[nn.Module, ArraySplit, list[str]]:
    torch.manual_seed(0)
    model = TinyBNNet().double()
    with torch.no_grad():  # non-trivial running statistics and affine values
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.3, 0.3)
    x = torch.randn(20, 1, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    data = ArraySplit(x, y, torch.arange(100, 120))
    names = ["bn.weight", "bn.bias", "head.weight", "head.bias"]
    return model, data, names


@pytest.fixture(scope="session")
def small():
    """A float32 smallcnn (importable in worker processes) and 48 random 8x8 samples."""
    torch.manual_seed(0)
    model = perturbed_bn(create_model("smallcnn", 4, 1, 8, width=4))
    names = select_trainable(model, "bn")
    x = torch.randn(48, 1, 8, 8)
    data = ArraySplit(x, torch.randint(0, 4, (48,)), torch.arange(48))
    return model, names, w0_of(model), data
