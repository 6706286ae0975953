"""Shared fixtures: digits loaded once, a quick training recipe."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.training import TrainConfig


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", public_fraction=0.3)


@pytest.fixture(scope="session")
def quick_cfg() -> TrainConfig:
    return TrainConfig(epochs=3, lr=0.05, batch_size=64, seed=0)
