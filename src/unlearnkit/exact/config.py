"""Validated settings for the exact-unlearning ensembles (a bad value fails before any work)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.retrain import RetrainPolicy
from unlearnkit.exact.sequences import check_prior
from unlearnkit.training import TrainConfig

HeadInit = Literal["backbone", "random"]


def _stage_recipe() -> TrainConfig:
    return TrainConfig(epochs=5, lr=0.01, batch_size=32, schedule="cosine")


class ShardedConfig(BaseModel):
    """What S3T and SISA share.

    retrain_policy: when deletions trigger retrains (see ``retrain.py``): ``eager``,
    ``dead_shard``, ``all_dead`` or ``manual``.
    head_init: where a first stage's head starts: ``backbone`` (the backbone's own head, trained
    on the public split only, so still exact) or ``random`` (a seeded init; ensembles saved
    before this option existed load as ``random``). With small shards a random head gets too
    few steps: measured on Fashion-MNIST in ``results/fashion_mnist/s3t``.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = "smallcnn"
    model_options: dict[str, Any] = Field(default_factory=dict)
    num_shards: int = Field(5, ge=1, le=1000, description="m")
    num_slices: int = Field(3, ge=1, le=64, description="L: slices = LoRA blocks per sequence")
    lora_rank: int = Field(16, ge=1, le=1024)
    lora_alpha: float = Field(16.0, gt=0)
    lora_targets: list[str] = Field(
        default_factory=list,
        description="module-name patterns (fnmatch, whole name) of the layers that get LoRA; "
        "empty: q and v of a ViT's attention, else every Linear / Conv2d but the head",
    )
    lora_layers: list[Literal["linear", "conv2d"]] = Field(
        default_factory=lambda: ["linear", "conv2d"],
        min_length=1,
        description="module types that may get LoRA (grouped / depthwise convs are skipped)",
    )
    adapt: int | str | None = Field(
        None,
        description="which of those layers the blocks adapt: null = all (the default), an int k "
        "= the last k (nearest the head), a string = a module-name pattern (fnmatch, whole "
        "name); the frozen layers below the first adapted one run once per prediction, shared "
        "by all shards",
    )
    train: TrainConfig = Field(default_factory=_stage_recipe, description="recipe of one stage")
    retrain_policy: RetrainPolicy = "dead_shard"
    head_init: HeadInit = "backbone"
    seed: int = 0

    @field_validator("adapt", mode="before")
    @classmethod
    def _adapt(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1) or value == "":
            raise ValueError(f"adapt = {value!r}: give k >= 1 (the last k layers) or a pattern")
        return value


class S3TConfig(ShardedConfig):
    num_sequences: int | None = Field(
        None,
        ge=1,
        validate_default=False,
        description="B: sequences (orders of slices) per shard; default min(3, L)",
    )
    deletion_prior: list[float] | None = Field(
        None, description="per-slice deletion probabilities; None = uniform (cyclic sequences)"
    )

    @model_validator(mode="after")
    def _check(self) -> S3TConfig:
        if self.num_sequences is None:
            self.num_sequences = min(3, self.num_slices)
        if self.num_sequences > math.factorial(self.num_slices):
            raise ValueError(
                f"num_sequences = {self.num_sequences} exceeds the "
                f"{math.factorial(self.num_slices)} orders of {self.num_slices} "
                "slices (L!)"
            )
        if self.deletion_prior is not None:
            try:
                check_prior(self.deletion_prior, self.num_slices)
            except UnlearnkitError as exc:
                raise ValueError(str(exc)) from None
        return self


class SISAConfig(ShardedConfig):
    retrain_policy: RetrainPolicy = "eager"
    aggregation: Literal["mean_logits", "vote"] = "mean_logits"
