"""Epoch counts that scale with the data, so a subset run is a small copy of the full one.

A preset's epoch counts are chosen for one training set: Fashion-MNIST's 2 training epochs are
658 optimisation steps on its 42,000 samples at batch 128, but only 34 steps on the 2,100 of a
``--subset 3000`` run, which then stops far short of where the full run ends (70.0% test
accuracy against 90.5%). An :class:`EpochScaling` block keeps the number of steps instead: the
epochs ``e`` listed in ``base`` were chosen for a set of ``reference_size`` samples, and on a set
of ``n`` samples at batch ``b`` they become

    clamp(round(e * ceil(reference_size / b) / ceil(n / b)), min_epochs, max_epochs)

Pretraining (``pretrain_config``) counts against the public split (``reference_public_size``);
every other setting counts against D, and the settings that iterate a part of D (a method on
D_r or D_f, relearning on D_f) scale by the same ratio as D. At ``n == reference_size`` every
count is unchanged.

The counts are resolved once, when the config first meets its data (:func:`resolve_epochs`),
and the block records what they were resolved for (``size``, ``public_size``) and the steps of
training and pretraining (``steps``), in ``results.json`` and a saved model's metadata alike. A
config that carries a recorded block keeps its epochs (a saved model's recipe is fixed; the
service's retrain must repeat it); to resize, leave ``size`` out or set ``epoch_scaling: null``.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unlearnkit.metrics.relearn import RELEARN_BATCH_SIZE
from unlearnkit.training import TrainConfig

PRETRAIN = "pretrain_config"
# a setting is a top-level section or count, or the parameter set of a method (or a set nested
# in one, e.g. a RUM step's ``method_params.rum.medium.params``)
SETTING = re.compile(r"^(pretrain_config|train|relearn_max_epochs|method_params(\.[\w-]+)+)$")
# the batch of a setting that does not state one: TrainConfig's and the methods' default, and
# relearning's fixed batch
DEFAULT_BATCH = int(TrainConfig.model_fields["batch_size"].default)
COUNT_BATCH = {"relearn_max_epochs": RELEARN_BATCH_SIZE}

C = TypeVar("C", bound=BaseModel)


class EpochScaling(BaseModel):
    """Which epoch counts scale with the size of the data, from what reference, within what
    bounds; and, once resolved, what they were resolved for."""

    model_config = ConfigDict(extra="forbid")

    reference_size: int = Field(
        ge=1, description="samples in D that the counts in base were chosen for"
    )
    reference_public_size: int | None = Field(
        None, ge=1, description="samples in the public split pretrain_config's count was chosen for"
    )
    min_epochs: int = Field(1, ge=1, description="the floor of every scaled count")
    max_epochs: int = Field(1000, ge=1, description="the ceiling of every scaled count")
    base: dict[str, int] = Field(
        default_factory=dict,
        description="setting -> its epochs at the reference size (pretrain_config, train, "
        "relearn_max_epochs, method_params.NAME)",
    )
    size: int | None = Field(None, ge=1, description="recorded: |D| the counts were resolved for")
    public_size: int | None = Field(None, ge=1, description="recorded: the public split's size")
    steps: dict[str, int] = Field(
        default_factory=dict, description="recorded: optimisation steps of train / pretraining"
    )

    @field_validator("base")
    @classmethod
    def _settings(cls, v: dict[str, int]) -> dict[str, int]:
        for name, epochs in v.items():
            if not SETTING.match(name):
                raise ValueError(
                    f"unknown setting {name!r} (pretrain_config, train, relearn_max_epochs or "
                    "method_params.NAME)"
                )
            if isinstance(epochs, bool) or epochs < 0:
                raise ValueError(f"{name}: epochs must be a count >= 0, got {epochs!r}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> EpochScaling:
        if self.max_epochs < self.min_epochs:
            raise ValueError(f"max_epochs ({self.max_epochs}) < min_epochs ({self.min_epochs})")
        if PRETRAIN in self.base and self.reference_public_size is None:
            raise ValueError(
                "pretrain_config scales with the public split: give reference_public_size"
            )
        return self

    def epochs_for(self, setting: str, epochs: int, size: int, batch_size: int) -> int:
        """``epochs`` of ``setting`` on a set of ``size`` samples: the reference's steps."""
        if epochs == 0:
            return 0  # no training stays no training
        reference = self.reference_public_size if setting == PRETRAIN else self.reference_size
        assert reference is not None  # checked by _bounds
        steps = epochs * math.ceil(reference / batch_size)
        per_epoch = math.ceil(size / batch_size)
        return min(self.max_epochs, max(self.min_epochs, round(steps / per_epoch)))


def _slot(data: dict[str, Any], setting: str) -> tuple[dict[str, Any], str] | None:
    """The dict and key that hold ``setting``'s epoch count in a config dict (None: absent)."""
    *parents, last = setting.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or not isinstance(node.get(last), dict | int):
        return None
    if isinstance(node[last], dict):
        return node[last], "epochs"
    return node, last


def setting_value(data: dict[str, Any], setting: str) -> int | None:
    """The epoch count a config dict gives ``setting`` (None: not given)."""
    slot = _slot(data, setting)
    if slot is None:
        return None
    holder, key = slot
    value = holder.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _batch(holder: dict[str, Any], key: str) -> int:
    if key == "epochs":
        return int(holder.get("batch_size", DEFAULT_BATCH))
    return COUNT_BATCH.get(key, DEFAULT_BATCH)


def apply_scaling(
    data: dict[str, Any], scaling: EpochScaling, size: int, public_size: int | None
) -> dict[str, int]:
    """Write the scaled counts of ``scaling.base`` into the config dict ``data`` (in place);
    returns the optimisation steps of training and pretraining. Pretraining is left as it is
    without a public split (it does not run); a setting the config does not hold is skipped
    (a recipe has no method parameters)."""
    steps: dict[str, int] = {}
    for setting, epochs in scaling.base.items():
        n = public_size if setting == PRETRAIN else size
        slot = _slot(data, setting)
        if n is None or slot is None:
            continue
        holder, key = slot
        batch = _batch(holder, key)
        holder[key] = scaling.epochs_for(setting, epochs, n, batch)
        if setting in (PRETRAIN, "train"):
            steps[setting] = holder[key] * math.ceil(n / batch)
    return steps


def resolve_epochs(cfg: C, size: int, public_size: int | None) -> C:
    """``cfg`` with its scaled epoch counts resolved for a D of ``size`` samples (and a public
    split of ``public_size``), the block recording both; ``cfg`` itself when it has no block or
    its block was resolved already."""
    scaling: EpochScaling | None = getattr(cfg, "epoch_scaling", None)
    if scaling is None or scaling.size is not None:
        return cfg
    data = cfg.model_dump()
    steps = apply_scaling(data, scaling, size, public_size)
    data["epoch_scaling"] = {
        **scaling.model_dump(),
        "size": size,
        "public_size": public_size,
        "steps": steps,
    }
    return type(cfg).model_validate(data)


__all__ = ["EpochScaling", "apply_scaling", "resolve_epochs", "setting_value"]
