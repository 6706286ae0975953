"""How a model is made: data, backbone, trainable parameters, pretraining and training settings.

This is the part of a configuration that a trained model carries with it (in its metadata) and
that every engine needs; the comparison run's own settings (forget spec, seeds, methods) extend
it in ``unlearnkit.config``. Every name is checked against its registry and every number against
its range when the config is built, so a typo fails in milliseconds, not after training.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from unlearnkit.data import DATASETS
from unlearnkit.errors import UnlearnkitError, validation_message
from unlearnkit.models import TRAINABLE, check_model_name, check_trainable_mode
from unlearnkit.recipe.scaling import EpochScaling
from unlearnkit.registry import Registry
from unlearnkit.training import TrainConfig


def check_name(registry: Registry[Any], value: str) -> str:
    registry.get(value)  # raises with the list of valid names
    return value


class RecipeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = "digits"
    data_dir: str | None = None
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    model: str = Field(
        "smallcnn",
        description="a registered name, timm:NAME, torchvision:NAME or module:pkg.mod:fn",
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the model's arguments; 'head' names its classifier module (--head)",
    )
    weights: str | None = Field(
        None, description="local checkpoint, .safetensors / .pt / .pth (no hub downloads)"
    )
    weights_skip_head: bool = Field(
        False, description="load all of weights but the head (a backbone for a new label set)"
    )
    peft: str = Field("bn", validate_default=True)  # checked against the model even if left out
    pretrain: bool = Field(True, description="pretrain on a disjoint public split first")
    public_fraction: float = Field(0.3, ge=0, lt=1)
    pretrain_config: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=20, lr=0.05, schedule="cosine")
    )
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=30, lr=0.05))
    epoch_scaling: EpochScaling | None = Field(
        None,
        description="epoch counts that keep their optimisation steps on a smaller or larger "
        "set (recipe/scaling.py); a data set's preset sets it, null turns it off",
    )

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return check_name(DATASETS, v)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return check_model_name(v)

    @field_validator("peft")
    @classmethod
    def _peft(cls, v: str, info: ValidationInfo) -> str:
        check_name(TRAINABLE, v)
        if "model" in info.data:  # absent when the model name itself was invalid
            check_trainable_mode(info.data["model"], v, info.data.get("model_options", {}))
        return v

    @model_validator(mode="after")
    def _skip_head_needs_weights(self) -> RecipeConfig:
        if self.weights_skip_head and self.weights is None:
            raise ValueError("weights_skip_head needs weights (a checkpoint file)")
        return self

    @model_validator(mode="after")
    def _nothing_public(self) -> RecipeConfig:
        if self.pretrain and self.public_fraction == 0 and self.weights is None:
            self.pretrain = False
        return self


def recipe_of(data: dict[str, Any]) -> RecipeConfig:
    """The recipe part of a stored config (older model files stored the whole experiment)."""
    fields = {k: v for k, v in data.items() if k in RecipeConfig.model_fields}
    try:
        return RecipeConfig(**fields)
    except ValidationError as exc:
        raise UnlearnkitError(validation_message(exc)) from None
