"""The audit's own settings (the recipe, forget spec and methods come from ExperimentConfig)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearnkit.errors import UnlearnkitError, validation_message
from unlearnkit.exact import ENSEMBLES
from unlearnkit.metrics.audit_intervals import PAIR_INTERVALS


class AuditConfig(BaseModel):
    """How many shadow models, and the constants of the two tests (docs/audit.md)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(8, ge=3, le=10_000, description="U-LiRA shadow pairs (unlearned + retrained)")
    n: int = Field(8, ge=2, le=10_000, description="challenge: unlearned and retrained models each")
    seed: int = Field(0, ge=0, description="first model seed; forget sets and pools derive from it")
    shared_start: bool = Field(
        True,
        description="every model starts from one pretrained backbone (public data only; the head "
        "is re-drawn per seed); False re-pretrains per seed",
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="challenge: delta of (epsilon, delta)")
    bucket_width: float = Field(0.5, gt=0, description="challenge: epsilon bucket width")
    rates: Literal["clopper_pearson", "empirical"] = Field(
        "clopper_pearson", description="challenge: how FPR / FNR are estimated from N models"
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="challenge: Clopper-Pearson level")
    thresholds: Literal["single_and_double", "single"] = Field(
        "single_and_double", description="challenge: the decision rules epsilon maximises over"
    )
    epsilon_cap: float | None = Field(None, gt=0, description="challenge: clip epsilon here")
    variance: Literal["per_example", "global"] = Field(
        "per_example", description="U-LiRA: per-example Gaussian variances or one pooled"
    )
    min_sd: float = Field(1e-3, gt=0, description="U-LiRA: floor of each fitted sd")
    n_boot: int = Field(
        1000, ge=10, le=100_000, description="resamples (or role exchanges) per interval"
    )
    interval: str = Field(
        "permutation",
        description="U-LiRA intervals (AUC, TPR): permutation (the null from exchanging the "
        "roles within pairs; exact under the null), pair_jackknife (t at K - 1 df) or "
        "pair_bootstrap (the percentile interval before issue 27; too narrow); docs/audit.md",
    )
    ensembles: list[str] = Field(
        default_factory=list,
        description="exact ensembles audited too (s3t, sisa): trained on D, the forget set "
        "deleted (affected shards retrained), scored against the same scheme trained without it",
    )
    ensemble_policies: list[Literal["eager", "manual"]] = Field(
        default_factory=lambda: ["eager"],
        description="deletion policies each ensemble is audited under: eager (every touched "
        "shard retrained) and/or manual (blocks switched off only, no retrain; row "
        "'<scheme>-deactivate')",
        min_length=1,
    )
    ensemble_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the ensembles' shape and recipe (num_shards, num_slices, lora_rank, ...)",
    )

    @field_validator("ensembles")
    @classmethod
    def _known_ensembles(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in ENSEMBLES.names():
                raise ValueError(f"unknown ensemble {name!r}; choose from {ENSEMBLES.names()}")
        return list(dict.fromkeys(names))

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, name: str) -> str:
        if name not in PAIR_INTERVALS:
            raise ValueError(f"unknown interval {name!r}; choose from {PAIR_INTERVALS.names()}")
        return name

    @field_validator("ensemble_policies")
    @classmethod
    def _unique_policies(cls, policies: list[str]) -> list[str]:
        return list(dict.fromkeys(policies))


def audit_config(**values: Any) -> AuditConfig:
    """Validated settings; a bad value is a one-line ``UnlearnkitError`` naming the field."""
    try:
        return AuditConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise UnlearnkitError(f"audit: {validation_message(exc)}") from None
