"""Small S3T/SISA set-ups: a digits subset, a narrow CNN, one epoch per stage."""

from __future__ import annotations

import pytest
import torch
import typer

from unlearnkit.cli.exact import mount
from unlearnkit.data.base import ArraySplit
from unlearnkit.exact import S3TConfig, SISAConfig
from unlearnkit.exact.backbone import random_backbone
from unlearnkit.exact.stack import StackSpec
from unlearnkit.training import TrainConfig

RECIPE = TrainConfig(epochs=1, lr=0.01, batch_size=16)
OPTIONS = {"width": 8}


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """One thread: these models are tiny, and a shared machine makes 2 threads much slower."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread_for_module_fixtures() -> None:
    """Autouse runs before the module-scoped fixtures that train ensembles."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small(digits) -> tuple[ArraySplit, ArraySplit]:
    """240 training samples (ids kept), 120 test samples."""
    return digits.train.subset(torch.arange(240)), digits.test.subset(torch.arange(120))


@pytest.fixture(scope="session")
def backbone() -> dict[str, torch.Tensor]:
    return random_backbone(StackSpec("smallcnn", 10, 1, 8, OPTIONS), seed=5)


@pytest.fixture(scope="session")
def s3t_config():
    """``s3t_config(**overrides)``: m=2, L=3, B=2, rank 4, manual retrains."""

    def make(**kw) -> S3TConfig:
        base = dict(
            num_shards=2,
            num_slices=3,
            num_sequences=2,
            model_options=OPTIONS,
            train=RECIPE,
            retrain_policy="manual",
            lora_rank=4,
        )
        return S3TConfig(**{**base, **kw})

    return make


@pytest.fixture(scope="session")
def sisa_config():
    """``sisa_config(**overrides)``: m=2, L=3, rank 4, eager retrains."""

    def make(**kw) -> SISAConfig:
        base = dict(num_shards=2, num_slices=3, model_options=OPTIONS, train=RECIPE, lora_rank=4)
        return SISAConfig(**{**base, **kw})

    return make


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The s3t / sisa command groups on their own app (the CLI tests' entry point)."""
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a group needs >1 command to keep sub-command names
    mount(app)
    return app
