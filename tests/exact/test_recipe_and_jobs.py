"""The ensemble recipe (data, backbone, ensemble) and what a shard-training worker does."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from pydantic import ValidationError

import unlearnkit.exact.jobs as jobs
from unlearnkit.exact import (
    EnsembleRecipe,
    S3TEnsemble,
    SISAConfig,
    SISAEnsemble,
    StackSpec,
    build_ensemble,
)
from unlearnkit.exact.recipe import ensemble_class, ensemble_data
from unlearnkit.models import Architecture


def test_recipe_validates_names_and_files_and_names_its_backbone() -> None:
    with pytest.raises(ValidationError, match="unknown dataset"):
        EnsembleRecipe(dataset="nope")
    with pytest.raises(ValidationError, match="no such file"):
        EnsembleRecipe(weights="/nonexistent.safetensors")
    assert EnsembleRecipe().backbone == "public"
    assert EnsembleRecipe(pretrain=False).backbone == "random"
    assert EnsembleRecipe(public_fraction=0.0).backbone == "random"
    assert ensemble_class(SISAConfig()) is SISAEnsemble


def test_build_ensemble_reuses_data_and_backbone(digits, backbone, s3t_config) -> None:
    """The benchmark's path: one bundle and backbone, the library trains the ensemble and
    records where its data came from (so `predict` can find it again)."""
    recipe = EnsembleRecipe(pretrain=False)
    bundle = dataclasses.replace(digits, train=digits.train.subset(torch.arange(120)))
    ens = build_ensemble(recipe, s3t_config(), bundle=bundle, backbone=backbone)
    assert isinstance(ens, S3TEnsemble) and ens.meta["backbone"] == "random"
    assert ens.meta["train_fingerprint"] == bundle.train.fingerprint()
    ref = S3TEnsemble.train(
        bundle.train, s3t_config(), num_classes=bundle.num_classes, backbone_state=backbone
    )
    x = digits.test.x[:20]
    assert torch.equal(ens.predict_logits(x), ref.predict_logits(x))
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        ensemble_data({**ens.meta, "public_fraction": 0.0})


def test_stack_spec_is_an_architecture_plus_lora() -> None:
    spec = StackSpec.of(Architecture("smallcnn", 10, 1, 8, {"width": 4}), rank=2, alpha=4.0)
    assert isinstance(spec, Architecture) and spec.architecture == Architecture(
        "smallcnn", 10, 1, 8, {"width": 4}
    )
    assert StackSpec.from_dict(spec.to_dict()) == spec
    assert spec.build().get_classifier().out_features == 10


def test_worker_processes_pin_their_threads_the_caller_keeps_its_own(
    trained_job, monkeypatch
) -> None:
    pinned: list[int] = []
    monkeypatch.setattr(jobs, "pin_worker_threads", pinned.append)
    here = jobs.run_shard_job(trained_job)  # in the calling process: threads left alone
    assert pinned == []
    elsewhere = dataclasses.replace(trained_job, origin_pid=os.getpid() + 1, worker_threads=3)
    there = jobs.run_shard_job(elsewhere)  # as in a Ray task or a pool worker
    assert pinned == [3]
    assert here.keys() == there.keys() and all(torch.equal(here[k], there[k]) for k in here)


@pytest.fixture
def trained_job(small, backbone, s3t_config) -> jobs.ShardJob:
    train, _ = small
    ens = S3TEnsemble.train(
        train.subset(torch.arange(60)),
        s3t_config(num_shards=1, num_slices=2, num_sequences=1),
        num_classes=10,
        backbone_state=backbone,
    )
    assert ens.worker_threads == 1
    return ens._job(0, [(0, 0), (0, 1)])
