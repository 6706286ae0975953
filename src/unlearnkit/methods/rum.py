"""RUM (Zhao et al., NeurIPS 2024): refine the forget set by memorization, then unlearn each part
with the method that suits it.

1. Refine: score the forget set (Feldman-Zhang file or a proxy computed on the fly by replaying
   the original training) and split it into low / medium / high memorization subsets, of equal
   size or by thresholds on the score.
2. Meta-unlearn sequentially low -> medium -> high, each with its own method and
   hyper-parameters (``none`` skips a subset). The retain set of every step is D_r: it never
   holds a subset still waiting to be forgotten, nor one already forgotten.

Named variants (the paper's CIFAR-10 choice, the proxy variant) live in ``configs/rum.yaml`` and
are loaded with ``config=PATH`` (+ ``variant=NAME``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from unlearnkit.data.base import ArraySplit, concat_splits
from unlearnkit.data.scores import load_scores
from unlearnkit.errors import UnlearnkitError
from unlearnkit.memorization.proxies import PROXIES, run_with_proxies
from unlearnkit.methods.base import (
    METHODS,
    UnlearningContext,
    UnlearningMethod,
    create_method,
    register_method,
)

SUBSETS = ("low", "medium", "high")
SKIP = "none"


class RumStep(BaseModel):
    """The method for one subset (``none`` = leave it) and its hyper-parameters."""

    model_config = ConfigDict(extra="forbid")

    method: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value == "rum":
            raise ValueError("RUM cannot nest itself")
        if value != SKIP and value not in METHODS:
            raise ValueError(
                f"unknown method {value!r}; choose none or one of: {', '.join(METHODS.names())}"
            )
        return value

    @model_validator(mode="after")
    def _params(self) -> RumStep:
        if self.method != SKIP:
            create_method(self.method, **self.params)  # validates the hyper-parameters now
        elif self.params:
            raise ValueError("method 'none' takes no params")
        return self


def _read_variant(path: str, variant: str) -> dict[str, Any]:
    """A named variant from a RUM YAML file; every variant must name all three subsets."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except OSError as exc:
        raise UnlearnkitError(f"cannot read RUM config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UnlearnkitError(f"RUM config {path} is not valid YAML: {exc}") from None
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict) or variant not in variants:
        names = ", ".join(variants) if isinstance(variants, dict) else "(none)"
        raise UnlearnkitError(
            f"RUM config {path} has no variant {variant!r} under 'variants' (found: {names})"
        )
    chosen = variants[variant]
    if not isinstance(chosen, dict):
        raise UnlearnkitError(f"RUM config {path}: variant {variant!r} must be a mapping")
    missing = [s for s in SUBSETS if s not in chosen]
    if missing:
        raise UnlearnkitError(
            f"RUM config {path}: variant {variant!r} names no {missing[0]!r} "
            "subset (each of low, medium, high needs a method; use none to "
            "skip one)"
        )
    return chosen


class RumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(None, description="YAML file with named variants")
    variant: str = Field("paper", description="which variant of ``config``")
    scores: str = Field(
        "proxy:confidence",
        description="proxy:NAME (computed on the fly) or file:PATH (a score file)",
    )
    split: Literal["equal", "thresholds"] = "equal"
    thresholds: tuple[float, float] | None = Field(
        None, description="low < t1 <= medium < t2 <= high, on the memorization score"
    )
    low: RumStep = Field(default_factory=lambda: RumStep(method=SKIP))
    medium: RumStep = Field(default_factory=lambda: RumStep(method="finetune"))
    high: RumStep = Field(default_factory=lambda: RumStep(method="salun"))

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("config"):
            base = _read_variant(data["config"], data.get("variant", "paper"))
            data = {**base, **data}
        return data

    @field_validator("scores")
    @classmethod
    def _source(cls, value: str) -> str:
        kind, sep, arg = value.partition(":")
        if not sep or not arg or kind not in ("proxy", "file"):
            raise ValueError(f"{value!r} must be proxy:NAME or file:PATH")
        if kind == "proxy" and arg not in PROXIES:
            raise ValueError(f"unknown proxy {arg!r}; choose one of: {', '.join(PROXIES.names())}")
        if kind == "file" and not Path(arg).expanduser().is_file():
            raise ValueError(
                f"score file {arg} not found (write one with `unlearnkit memorize`, "
                "or use scores=proxy:NAME)"
            )
        return value

    @model_validator(mode="after")
    def _split(self) -> RumParams:
        bad = self.thresholds is None or not self.thresholds[0] < self.thresholds[1]
        if self.split == "thresholds" and bad:
            raise ValueError("split 'thresholds' needs thresholds [t1, t2] with t1 < t2")
        return self


def full_training_set(ctx: UnlearningContext) -> ArraySplit:
    """D rebuilt from D_r and D_f in id order (the order the original model was trained in)."""
    both = concat_splits(ctx.retain, ctx.forget)  # an index view, no pixel copied
    return both.subset(torch.argsort(both.ids))


def forget_scores(ctx: UnlearningContext, source: str) -> torch.Tensor:
    """Memorization (higher = more memorized) of each forget sample, in ``ctx.forget`` order."""
    kind, _, arg = source.partition(":")
    data = full_training_set(ctx)
    if kind == "file":
        table = load_scores(arg)
        table.check_matches(data, source=f"score file {arg}")
        return table.lookup(ctx.forget.ids)
    run = run_with_proxies(
        ctx.fresh_model(), data, ctx.train_config, ctx.trainable, [arg], holdout=ctx.test
    )
    direction = PROXIES.get(arg).direction  # type: ignore[attr-defined]
    values = torch.nan_to_num(run.values[arg] * direction, nan=0.0)
    return values[torch.searchsorted(data.ids, ctx.forget.ids)]


def split_positions(
    scores: torch.Tensor, split: str, thresholds: tuple[float, float] | None
) -> dict[str, torch.Tensor]:
    """Positions in the forget set of the low / medium / high subsets."""
    if split == "equal":
        order = torch.argsort(scores, stable=True)
        return dict(zip(SUBSETS, torch.tensor_split(order, 3), strict=True))
    assert thresholds is not None
    t1, t2 = thresholds
    masks = (scores < t1, (scores >= t1) & (scores < t2), scores >= t2)
    return {name: torch.nonzero(m).flatten() for name, m in zip(SUBSETS, masks, strict=True)}


@register_method
class RUM(UnlearningMethod):
    name = "rum"
    Params = RumParams
    summary = "split the forget set by memorization; low -> medium -> high, a method for each"

    def __init__(self, **params: Any) -> None:
        try:
            super().__init__(**params)
        except UnlearnkitError as exc:  # drop pydantic's "Value error, " noise
            message = str(exc).replace("Value error, ", "")
            message = message.replace("invalid hyper-parameter '?': ", "")
            raise UnlearnkitError(message) from None

    def plan(self, ctx: UnlearningContext) -> dict[str, torch.Tensor]:
        """Sample ids of each subset."""
        scores = forget_scores(ctx, self.params.scores)
        parts = split_positions(scores, self.params.split, self.params.thresholds)
        return {name: ctx.forget.ids[pos] for name, pos in parts.items()}

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        self.subsets = self.plan(ctx)
        model = ctx.model
        for name in SUBSETS:
            step: RumStep = getattr(self.params, name)
            ids = self.subsets[name]
            if step.method == SKIP or ids.numel() == 0:
                continue
            sub = copy.copy(ctx)
            sub.model, sub.forget, sub.retain = model, ctx.forget.select_ids(ids), ctx.retain
            model = create_method(step.method, **step.params).unlearn(sub)
        return model
