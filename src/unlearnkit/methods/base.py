"""One interface for every unlearning method, one registry to find them by name.

A method is built from validated hyper-parameters (scikit-learn style: nothing learned in
``__init__``) and applied with ``unlearn(ctx)``, which returns the unlearned model.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.batchnorm import DEFAULT_BN_MODE, BNMode, recompute_bn_statistics
from unlearnkit.registry import Registry
from unlearnkit.training import Callback, LossFn, TrainConfig, train


@dataclass
class UnlearningContext:
    """Everything a method may use. ``model`` is a private copy the method may change in place."""

    model: nn.Module
    initial_state: dict[str, torch.Tensor]
    retain: ArraySplit
    forget: ArraySplit
    test: ArraySplit
    num_classes: int
    trainable: list[str]
    train_config: TrainConfig
    peft: str = "full"
    seed: int = 0
    bn_mode: BNMode = DEFAULT_BN_MODE  # BatchNorm statistics policy (methods/batchnorm.py)

    def fresh_model(self) -> nn.Module:
        """The starting point of training on D (pretrained backbone + new head)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.initial_state)
        return model


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimParams(BaseModel):
    """Hyper-parameters shared by the fine-tuning family (SGD, docs/algorithms.md §5.1)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.01, gt=0, le=10)
    batch_size: int = Field(64, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)

    def train_config(self, seed: int, schedule: str = "constant") -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=schedule,
            seed=seed,
        )


class UnlearningMethod(ABC):
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    summary: ClassVar[str] = ""
    # False for methods too costly to run by default (the full-model NTK): `demo` and experiments
    # without an explicit method list skip them; naming them still runs them.
    in_default_run: ClassVar[bool] = True
    # The trainable-parameter modes (models.TRAINABLE names) the method works with; None = any.
    # ExperimentConfig checks it, so a mismatch fails before any training.
    trainable_modes: ClassVar[tuple[str, ...] | None] = None
    trainable_hint: ClassVar[str] = ""  # appended to the mismatch error, e.g. an alternative

    @classmethod
    def supports_trainable(cls, mode: str) -> bool:
        return cls.trainable_modes is None or mode in cls.trainable_modes

    @classmethod
    def check_trainable(cls, mode: str) -> None:
        """Raise a one-line error if the method cannot work with trainable mode ``mode``."""
        if not cls.supports_trainable(mode):
            assert cls.trainable_modes is not None
            needed = " or ".join(f"--peft {m}" for m in cls.trainable_modes)
            hint = f" ({cls.trainable_hint})" if cls.trainable_hint else ""
            raise UnlearnkitError(f"{cls.name} needs {needed}, got {mode!r}{hint}")

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "?"
            raise UnlearnkitError(
                f"{self.name}: invalid hyper-parameter {field!r}: {err['msg']}"
            ) from None

    @abstractmethod
    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        """The method's own step; BatchNorm training follows ``ctx.bn_mode`` (``fit_steps``)."""

    def run(self, ctx: UnlearningContext) -> nn.Module:
        """``unlearn`` and then the BatchNorm policy's closing step: the entry point of a
        comparison (RUM's sub-steps call ``unlearn``, so the policy closes once, at the end)."""
        return self.finish_batchnorm(self.unlearn(ctx), ctx)

    def finish_batchnorm(self, model: nn.Module, ctx: UnlearningContext) -> nn.Module:
        """``recompute``: the running statistics recomputed on D_r alone; otherwise as left."""
        if ctx.bn_mode == "recompute":
            recompute_bn_statistics(model, ctx.retain)
        return model

    def fit_steps(
        self,
        ctx: UnlearningContext,
        data: ArraySplit,
        loss_fn: LossFn | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> nn.Module:
        """Run the shared training loop with this method's optimiser settings."""
        assert isinstance(self.params, OptimParams)
        return train(
            ctx.model,
            data,
            self.params.train_config(ctx.seed),
            ctx.trainable,
            loss_fn=loss_fn,
            callbacks=callbacks,
            eval_mode=ctx.bn_mode == "frozen",
        )


def _is_method_class(obj: object) -> str | None:
    if isinstance(obj, type) and issubclass(obj, UnlearningMethod):
        return None
    return f"{obj!r} is not an UnlearningMethod subclass"


METHODS: Registry[UnlearningMethod] = Registry("method", "unlearnkit.methods", _is_method_class)
"""Built-in methods, plus third-party ones from the ``unlearnkit.methods`` entry-point group."""


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: register under ``cls.name``."""
    METHODS.register(cls.name)(cls)
    return cls


def create_method(name: str, /, **params: Any) -> UnlearningMethod:
    return METHODS.create(name, **params)


def method_defaults(name: str) -> dict[str, Any]:
    cls = METHODS.get(name)
    return cls.Params().model_dump()  # type: ignore[attr-defined]


def default_method_names(peft: str | None = None) -> list[str]:
    """The methods an experiment runs when the user names none (those that suit ``peft``)."""
    return [
        name
        for name in METHODS.names()
        if METHODS.get(name).in_default_run
        and (peft is None or METHODS.get(name).supports_trainable(peft))
    ]
