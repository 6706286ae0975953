"""A tiny problem for the memorization tests: 240 digits, a few relabelled on purpose."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.memorization.feldman_zhang import model_spec
from unlearnkit.training import TrainConfig

NOISY = 8


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """One thread (after the root conftest's two): on a shared, loaded 2-core machine the
    small models here run many times slower with two threads than with one."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny(digits) -> tuple[ArraySplit, torch.Tensor]:
    """240 training digits (ids 0..239) of which ``NOISY`` have a wrong label."""
    base = digits.train.subset(torch.arange(240))
    y = base.y.clone()
    noisy = torch.arange(0, 240, 240 // NOISY)[:NOISY]
    y[noisy] = (y[noisy] + 3) % 10
    return ArraySplit(base.x, y, torch.arange(240)), noisy


@pytest.fixture(scope="session")
def tiny_spec():
    from unlearnkit.models import create_model

    names = [n for n, _ in create_model("smallcnn", 10, 1, 8, width=16).named_parameters()]
    return model_spec("smallcnn", 10, 1, 8, names, None, {"width": 16})


@pytest.fixture(scope="session")
def tiny_recipe() -> TrainConfig:
    return TrainConfig(epochs=25, lr=0.05, batch_size=32, seed=0)
