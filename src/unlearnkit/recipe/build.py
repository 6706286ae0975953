"""The recipe, step by step: data bundle -> w0 (pretrained backbone + new head) -> trained on D.

Every engine that needs "the model trained on D" (the comparison run, memorization scoring, the
NTK state, the service) builds it here, so the recipe has one definition.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from unlearnkit.data import DatasetBundle, load_dataset
from unlearnkit.data.manifest import Manifest
from unlearnkit.models import create_model, prepare_model, reset_head, select_trainable
from unlearnkit.recipe.config import RecipeConfig
from unlearnkit.recipe.scaling import resolve_epochs
from unlearnkit.training import channels_last, train

C = TypeVar("C", bound=RecipeConfig)


@dataclass
class TrainedModel:
    """The model trained on D, plus what unlearning needs to know about how it was made."""

    model: nn.Module
    initial_state: dict[str, torch.Tensor]
    trainable: list[str]
    seed: int


def load_bundle(cfg: RecipeConfig, known: Manifest | None = None) -> DatasetBundle:
    """The data set of a recipe, with the public split carved out when it pretrains.
    ``known``: the checked manifest of a reopened image folder (its files are not re-read)."""
    public = cfg.public_fraction if cfg.pretrain and cfg.weights is None else 0.0
    extra = {} if known is None else {"known": known}
    return load_dataset(
        cfg.dataset, cfg.data_dir, seed=0, public_fraction=public, **cfg.dataset_options, **extra
    )


def sized_for(cfg: C, bundle: DatasetBundle) -> C:
    """``cfg`` with the epoch counts its ``epoch_scaling`` lists resolved for the sizes of
    ``bundle``'s D and public split (``recipe/scaling.py``); ``cfg`` itself when it has none or
    they were resolved already. Every engine calls it where a config first meets its data."""
    public = len(bundle.public) if bundle.public is not None else None
    return resolve_epochs(cfg, len(bundle.train), public)


def starting_model(
    cfg: RecipeConfig, bundle: DatasetBundle, seed: int, model: nn.Module | None = None
) -> nn.Module:
    """w0: a backbone pretrained on public data (or loaded from ``weights``) with a new head.

    ``model``: the user's own network instead of ``cfg.model`` (a copy is used; its head is
    found by convention or named with ``models.name_head``, and always re-initialised).
    """
    cfg = sized_for(cfg, bundle)
    torch.manual_seed(seed)
    given = model is not None
    if model is None:
        model = create_model(
            cfg.model,
            bundle.num_classes,
            bundle.in_chans,
            bundle.image_size,
            weights=cfg.weights,
            weights_skip_head=cfg.weights_skip_head,
            **cfg.model_options,
        )
    else:
        model = prepare_model(
            copy.deepcopy(model),
            bundle.num_classes,
            weights=cfg.weights,
            weights_skip_head=cfg.weights_skip_head,
        )
    if cfg.pretrain and bundle.public is not None:
        select_trainable(model, "full")
        pre = cfg.pretrain_config.model_copy(update={"seed": seed})
        with channels_last(model):
            train(model, bundle.public, pre)
    if cfg.pretrain or cfg.weights is not None or given:
        reset_head(model, seed)
    return model


def train_original(
    cfg: RecipeConfig, bundle: DatasetBundle, seed: int, model: nn.Module | None = None
) -> TrainedModel:
    """w0, then the PEFT parameters trained on D: the model every method unlearns from
    (``model``: the user's own network, see ``starting_model``)."""
    cfg = sized_for(cfg, bundle)
    model = starting_model(cfg, bundle, seed, model)
    trainable = select_trainable(model, cfg.peft)
    initial = copy.deepcopy(model.state_dict())
    with channels_last(model):  # the layout the experiment loop's retrain reference uses too
        train(model, bundle.train, cfg.train.model_copy(update={"seed": seed}), trainable)
    return TrainedModel(model, initial, trainable, seed)
