"""Tiny models for the deletion service: an S3T ensemble (exact) and a Fast-NTK model dir
(approximate), each trained once per session and copied per test; tokens; service helpers."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from service_helpers import ADMIN, DELETE, PREDICT, start_service

from unlearnkit.data import load_dataset
from unlearnkit.service import TokenStore
from unlearnkit.service.app import create_app
from unlearnkit.service.auth import TokenSpec
from unlearnkit.training import TrainConfig


@pytest.fixture(scope="session")
def digits_small():
    bundle = load_dataset("digits", public_fraction=0.3)
    return bundle, bundle.train.subset(torch.arange(240))


@pytest.fixture(scope="session")
def s3t_base(tmp_path_factory, digits_small) -> Path:
    """3 shards x 2 slices x 2 sequences of rank-2 LoRA blocks on 240 digits (about 1 s)."""
    from unlearnkit.exact import S3TConfig, S3TEnsemble

    _, train = digits_small
    cfg = S3TConfig(
        num_shards=3,
        num_slices=2,
        num_sequences=2,
        lora_rank=2,
        train=TrainConfig(epochs=1, lr=0.05, batch_size=32),
        retrain_policy="manual",
    )
    out = tmp_path_factory.mktemp("s3t")
    S3TEnsemble.train(train, cfg, num_classes=10).save(out)
    return out


@pytest.fixture(scope="session")
def ntk_base(tmp_path_factory, save_tiny_trained) -> Path:
    """A width-4 smallcnn trained 1 epoch (BN + head trainable) with its NTK state."""
    from unlearnkit.ntk.incremental import precompute_state
    from unlearnkit.service.approximate import STATE_FILE

    out = tmp_path_factory.mktemp("ntk")
    trained, bundle = save_tiny_trained(out)
    state = precompute_state(
        trained.model,
        trained.trainable,
        trained.initial_state,
        bundle.train,
        bundle.num_classes,
        0.5,
        data_fingerprint=bundle.train.fingerprint(),
    )
    state.save(out / STATE_FILE)
    return out


@pytest.fixture
def exact_dir(tmp_path, s3t_base) -> Path:
    return Path(shutil.copytree(s3t_base, tmp_path / "s3t"))


@pytest.fixture
def ntk_dir(tmp_path, ntk_base) -> Path:
    return Path(shutil.copytree(ntk_base, tmp_path / "ntk"))


@pytest.fixture(scope="session")
def tokens() -> TokenStore:
    return TokenStore(
        [
            TokenSpec(name="ops", token=ADMIN, scopes=["admin"]),
            TokenSpec(name="app", token=PREDICT, scopes=["predict"]),
            TokenSpec(name="privacy", token=DELETE, scopes=["delete"]),
        ]
    )


@pytest.fixture
def serve(tokens) -> Iterator[Callable[..., Any]]:
    """serve(model_dir, **config) -> a TestClient over a started service (closed at the end)."""
    opened: list[Any] = []

    @contextmanager
    def _serve(model_dir: Path, **overrides: Any) -> Iterator[TestClient]:
        service = start_service(model_dir, **overrides)
        with TestClient(create_app(service, tokens)) as client:
            client.service = service  # type: ignore[attr-defined]
            opened.append(service)
            yield client

    yield _serve
    for service in opened:
        service.close()
