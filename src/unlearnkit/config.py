"""Experiment configuration: a pydantic model, loadable from YAML, overridable by CLI flags.

Every name (dataset, model, trainable mode, method) is checked against its registry and every
number against its range before any work starts, so a typo fails in milliseconds, not after
training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
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
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import METHODS, default_method_names
from unlearnkit.models import MODELS, TRAINABLE, check_trainable_mode
from unlearnkit.training import TrainConfig


def _check_name(registry: Any, value: str) -> str:
    registry.get(value)  # raises with the list of valid names
    return value


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = "digits"
    data_dir: str | None = None
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    model: str = "smallcnn"
    model_options: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description="local backbone checkpoint (no hub downloads)")
    peft: str = Field("bn", validate_default=True)  # checked against the model even if left out
    pretrain: bool = Field(True, description="pretrain on a disjoint public split first")
    public_fraction: float = Field(0.3, ge=0, lt=1)
    pretrain_config: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=20, lr=0.05, schedule="cosine")
    )
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=30, lr=0.05))
    forget: str = "random:0.1"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    methods: list[str] = Field(default_factory=list)
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    relearn_threshold: float = Field(90.0, gt=0, le=100)
    relearn_max_epochs: int = Field(20, ge=1)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return _check_name(DATASETS, v)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return _check_name(MODELS, v)

    @field_validator("peft")
    @classmethod
    def _peft(cls, v: str, info: ValidationInfo) -> str:
        _check_name(TRAINABLE, v)
        if "model" in info.data:  # absent when the model name itself was invalid
            check_trainable_mode(info.data["model"], v, info.data.get("model_options", {}))
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str], info: ValidationInfo) -> list[str]:
        for name in v:
            method = _check_name(METHODS, name)
            if "peft" in info.data:
                METHODS.get(method).check_trainable(info.data["peft"])
        return v

    @model_validator(mode="after")
    def _defaults(self) -> ExperimentConfig:
        if not self.methods:
            self.methods = default_method_names(self.peft)
        if "retrain" not in self.methods:  # the reference every metric is measured against
            self.methods = ["retrain", *self.methods]
        self.methods = ["retrain", *[m for m in self.methods if m != "retrain"]]
        for name in self.method_params:
            _check_name(METHODS, name)
        if self.pretrain and self.public_fraction == 0 and self.weights is None:
            self.pretrain = False
        return self


def validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    return f"invalid {field}: {msg}"


def build_config(base: dict[str, Any] | None = None, **overrides: Any) -> ExperimentConfig:
    """Merge a config dict with CLI overrides (``None`` means 'not given') and validate."""
    data = dict(base or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ExperimentConfig(**data)
    except ValidationError as exc:
        raise UnlearnkitError(validation_message(exc)) from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise UnlearnkitError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UnlearnkitError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UnlearnkitError(f"config {path} must be a mapping of settings")
    return data
