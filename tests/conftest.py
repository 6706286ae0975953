"""Shared fixtures: digits loaded once, a quick training recipe, a tiny trained model directory,
and unlearning contexts built the way the library builds them."""

from __future__ import annotations

import copy

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


def _make_context(cfg, bundle, original, forget, seed: int = 0):
    """``experiment.unlearning_context`` with a private copy of the model.

    ``forget`` is a forget spec (``"class:3"``) or the ids themselves. Methods change
    ``ctx.model`` in place, so each context gets its own copy, as ``run_seed`` does.
    """
    from unlearnkit.data.forget import select_forget
    from unlearnkit.experiment import unlearning_context

    ids = select_forget(bundle.train, forget, seed) if isinstance(forget, str) else forget
    ctx = unlearning_context(cfg, bundle, original, torch.as_tensor(ids), seed)
    ctx.model = copy.deepcopy(original.model)
    return ctx


@pytest.fixture(scope="session")
def make_context():
    """``make_context(cfg, bundle, original, forget, seed=0) -> UnlearningContext``."""
    return _make_context
