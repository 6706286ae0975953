"""Memorization scores for an experiment recipe: the same model, start and training as the
original, so the scores describe the model that will be unlearned.

``feldman_zhang_scores`` (K subset models, expensive, parallel, resumable) and
``proxy_scores`` (one training run, cheap) both return ``ScoreTable`` objects ready to save.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unlearnkit.data.base import DatasetBundle
from unlearnkit.data.scores import ScoreTable
from unlearnkit.memorization.feldman_zhang import (
    FZConfig,
    FZResult,
    ModelProgress,
    SubsetModelSpec,
    estimate_memorization,
    model_spec,
)
from unlearnkit.memorization.proxies import PROXIES, ProxyRun, run_with_proxies
from unlearnkit.models import select_trainable
from unlearnkit.recipe import RecipeConfig, sized_for, starting_model


def spec_for(cfg: RecipeConfig, bundle: DatasetBundle, seed: int) -> SubsetModelSpec:
    """The subset models' starting point: the experiment's pretrained backbone (shared, new head
    per model) or, without pre-training, a fresh random init per model."""
    model = starting_model(cfg, bundle, seed)
    trainable = select_trainable(model, cfg.peft)
    shared = cfg.weights is not None or (cfg.pretrain and bundle.public is not None)
    return model_spec(
        cfg.model,
        bundle.num_classes,
        bundle.in_chans,
        bundle.image_size,
        trainable,
        copy.deepcopy(model.state_dict()) if shared else None,
        cfg.model_options,
        reset_head=shared,
    )


def feldman_zhang_scores(
    cfg: RecipeConfig,
    bundle: DatasetBundle,
    fz: FZConfig,
    cache_dir: str | Path,
    executor: Any = None,
    progress: ModelProgress | None = None,
    **kwargs: Any,
) -> FZResult:
    cfg = sized_for(cfg, bundle)  # the original's epochs on this data
    spec = spec_for(cfg, bundle, fz.seed)
    recipe = cfg.train.model_copy(update={"seed": fz.seed, "progress": False})
    result = estimate_memorization(
        bundle.train, spec, recipe, fz, cache_dir, executor, progress, **kwargs
    )
    result.scores.meta["dataset"] = bundle.fingerprint
    return result


def proxy_scores(
    cfg: RecipeConfig,
    bundle: DatasetBundle,
    names: Sequence[str],
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, ScoreTable], ProxyRun]:
    """Train the original model once (recipe of ``cfg``, seed ``seed``) recording the proxies;
    the test split serves as the held-out data of the holdout proxy."""
    for name in names:
        PROXIES.get(name)  # unknown name: fail before any training
    cfg = sized_for(cfg, bundle)  # the original's epochs on this data
    model = starting_model(cfg, bundle, seed)
    trainable = select_trainable(model, cfg.peft)
    recipe = cfg.train.model_copy(update={"seed": seed})
    run = run_with_proxies(
        model, bundle.train, recipe, trainable, names, holdout=bundle.test, options=options
    )
    tables = {name: proxy_table(name, run, bundle, seed) for name in names}
    return tables, run


def proxy_table(
    name: str, run: ProxyRun, bundle: DatasetBundle | None = None, seed: int = 0
) -> ScoreTable:
    values = run.values[name]
    meta = {
        "method": name,
        "direction": PROXIES.get(name).direction,  # type: ignore[attr-defined]
        "seed": seed,
        "train_fingerprint": run.data.fingerprint(),
        "proxy_seconds": run.seconds[name],
        "train_seconds": run.train_seconds,
    }
    if bundle is not None:
        meta["dataset"] = bundle.fingerprint
    return ScoreTable(run.data.ids, values, torch.full_like(values, float("nan")), meta)
