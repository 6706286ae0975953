"""Shared fixtures: digits loaded once, a quick training recipe."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.training import TrainConfig


def _save_tiny_trained(out):
    """A width-4 smallcnn trained 1 epoch on digits (BN + head trainable), saved to ``out``.

    Returns (trained, bundle) for tests that also need the model or the data in memory.
    """
    from unlearnkit.config import ExperimentConfig
    from unlearnkit.recipe import load_bundle, save_trained, train_original

    cfg = ExperimentConfig(
        model="smallcnn",
        peft="bn",
        pretrain=False,
        dataset_options={"test_fraction": 0.8},
        model_options={"width": 4},
        train=TrainConfig(epochs=1),
    )
    bundle = load_bundle(cfg)
    trained = train_original(cfg, bundle, 0)
    save_trained(out, trained, cfg, bundle)
    return trained, bundle


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", public_fraction=0.3)


@pytest.fixture(scope="session")
def quick_cfg() -> TrainConfig:
    return TrainConfig(epochs=3, lr=0.05, batch_size=64, seed=0)


@pytest.fixture(scope="session")
def save_tiny_trained():
    """``save_tiny_trained(out) -> (trained, bundle)``: a quick model directory for CLI tests."""
    return _save_tiny_trained
