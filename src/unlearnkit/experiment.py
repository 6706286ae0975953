"""Run a comparison: pretrain -> train on D -> each method unlearns D_f -> measure vs retrain.

The retrain reference uses the same recipe, seed and pretrained starting point as the original,
on D_r only, so every difference a metric shows is due to the method.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from unlearnkit.config import ExperimentConfig
from unlearnkit.data import DatasetBundle
from unlearnkit.data.forget import select_forget
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.metrics import (
    Cost,
    accuracy,
    mean_ci95,
    measure_cost,
    mia_efficacy,
    params_touched,
    peak_rss_mb,
    relearn_epochs,
    tow,
    tow_mia,
)
from unlearnkit.models import (
    count_parameters,
    create_model,
    head_parameter_names,
    prepare_model,
    select_trainable,
)
from unlearnkit.recipe import TrainedModel, load_bundle, train_original
from unlearnkit.runtime import current_runtime, thread_report
from unlearnkit.training import channels_last

StepCallback = Callable[[str], None]  # told the name of each step as it starts
# Told each method's result as it is made (method name, its parameters, the context, the model):
# the CLI keeps the unlearned models this way to save them next to the run.
UnlearnedCallback = Callable[[str, Mapping[str, Any], UnlearningContext, nn.Module], None]


def evaluate(model: nn.Module, ctx: UnlearningContext, cfg: ExperimentConfig) -> dict[str, Any]:
    acc = {
        "retain": accuracy(model, ctx.retain),
        "forget": accuracy(model, ctx.forget),
        "test": accuracy(model, ctx.test),
    }
    return {
        "acc": acc,
        "mia_efficacy": mia_efficacy(model, ctx.retain, ctx.forget, ctx.test, seed=ctx.seed),
        "relearn_epochs": relearn_epochs(
            model,
            ctx.forget,
            ctx.trainable,
            threshold=cfg.relearn_threshold,
            max_epochs=cfg.relearn_max_epochs,
            seed=ctx.seed,
        ),
    }


def evaluate_original(
    model: nn.Module, ctx: UnlearningContext, cfg: ExperimentConfig
) -> dict[str, Any]:
    """``evaluate`` of the shared original, in the fast layout and left as it was."""
    with channels_last(model):
        return evaluate(model, ctx, cfg)


def unlearning_context(
    cfg: ExperimentConfig,
    bundle: DatasetBundle,
    original: TrainedModel,
    forget_ids: torch.Tensor,
    seed: int,
) -> UnlearningContext:
    """What every method gets for one seed: the trained model, D_r / D_f / test, the recipe."""
    return UnlearningContext(
        model=original.model,
        initial_state=original.initial_state,
        retain=bundle.train.drop_ids(forget_ids),
        forget=bundle.train.select_ids(forget_ids),
        test=bundle.test,
        num_classes=bundle.num_classes,
        trainable=original.trainable,
        train_config=cfg.train.model_copy(update={"seed": seed}),
        peft=cfg.peft,
        seed=seed,
    )


def run_seed(
    cfg: ExperimentConfig,
    bundle: DatasetBundle,
    seed: int,
    progress: StepCallback,
    original: TrainedModel | None = None,
    stages: list[dict[str, Any]] | None = None,
    on_unlearned: UnlearnedCallback | None = None,
    model: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Every method on one seed; ``original`` skips training when a trained model is given,
    ``model`` is the user's own network to start from (see ``recipe.starting_model``).

    ``stages`` receives the wall time and peak extra memory of each stage (training the
    original, each method with its evaluation)."""
    stages = [] if stages is None else stages
    if original is None:
        progress(f"seed {seed}: training the original model on D ({len(bundle.train)} samples)")
        with measure_cost() as cost:
            original = train_original(cfg, bundle, seed, model)
        stages.append(stage_record(f"seed {seed}: pretrain + train the original", cost))
    forget_ids = select_forget(bundle.train, cfg.forget, seed)
    base_ctx = unlearning_context(cfg, bundle, original, forget_ids, seed)
    rows = [
        {
            "method": "original",
            "seed": seed,
            **evaluate_original(original.model, base_ctx, cfg),
            "time_s": 0.0,
            "peak_mem_mb": 0.0,
            "params_touched": 0,
        }
    ]
    for name in cfg.methods:
        progress(f"seed {seed}: {name}")
        params = cfg.method_params.get(name, {})
        row, stage = run_method(cfg, name, params, base_ctx, original, on_unlearned)
        stages.append(stage_record(f"seed {seed}: {name} + evaluation", stage))
        rows.append(row)
    reference = next(r for r in rows if r["method"] == "retrain")
    for row in rows:
        score_against(row, reference)
    return rows


def run_method(
    cfg: ExperimentConfig,
    name: str,
    params: Mapping[str, Any],
    base_ctx: UnlearningContext,
    original: TrainedModel,
    on_unlearned: UnlearnedCallback | None = None,
) -> tuple[dict[str, Any], Cost]:
    """One method with ``params`` on a private copy of the original, then measured.

    Returns the result row (without ToW: that needs the retrain row) and the cost of the whole
    stage, unlearning plus evaluation."""
    method = create_method(name, **params)
    ctx = copy.copy(base_ctx)
    ctx.model = copy.deepcopy(original.model)
    with measure_cost() as stage, channels_last(ctx.model):
        with measure_cost() as cost:
            unlearned = method.unlearn(ctx)
        measured = evaluate(unlearned, ctx, cfg)
    if on_unlearned is not None:  # after the layout went back: contiguous weights to save
        on_unlearned(name, params, ctx, unlearned)
    row = {
        "method": name,
        "seed": base_ctx.seed,
        **measured,
        "time_s": cost.time_s,
        "peak_mem_mb": cost.peak_mem_mb,
        "params_touched": params_touched(original.model, unlearned),
    }
    return row, stage


def score_against(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Add ToW and ToW-MIA of ``row`` against the retrain row of the same seed."""
    row["tow"] = tow(row["acc"], reference["acc"])
    row["tow_mia"] = tow_mia(
        row["acc"], row["mia_efficacy"], reference["acc"], reference["mia_efficacy"]
    )
    return row


def stage_record(name: str, cost: Cost) -> dict[str, Any]:
    """One entry of ``results["stages"]``: a stage's name, wall time and peak extra memory."""
    return {"stage": name, "time_s": cost.time_s, "peak_mem_mb": cost.peak_mem_mb}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: mean and 95% CI of ToW and ToW-MIA, mean accuracies, MIA and cost."""
    summary: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        rows = [r for r in runs if r["method"] == method]
        entry: dict[str, Any] = {"n_seeds": len(rows)}
        for key in ("tow", "tow_mia"):
            mean, ci = mean_ci95([r[key] for r in rows])
            entry[f"{key}_mean"], entry[f"{key}_ci95"] = mean, list(ci) if ci else None
        for part in ("retain", "forget", "test"):
            entry[f"acc_{part}_mean"] = sum(r["acc"][part] for r in rows) / len(rows)
        for key in ("mia_efficacy", "time_s", "peak_mem_mb", "params_touched"):
            entry[f"{key}_mean"] = sum(r[key] for r in rows) / len(rows)
        relearn = [r["relearn_epochs"] for r in rows if r["relearn_epochs"] is not None]
        entry["relearn_epochs_mean"] = sum(relearn) / len(relearn) if relearn else None
        summary[method] = entry
    return summary


def run_experiment(
    cfg: ExperimentConfig,
    progress: StepCallback = lambda _: None,
    bundle: DatasetBundle | None = None,
    original: TrainedModel | None = None,
    originals: Mapping[int, TrainedModel] | None = None,
    on_unlearned: UnlearnedCallback | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """All seeds, all methods; returns the ``results.json`` document.

    ``model``: any ``nn.Module`` to start from instead of ``cfg.model`` (its head found by
    convention or named with ``unlearnkit.models.name_head``); every seed starts from a copy.

    ``original`` (a model already trained on D, single seed) or ``originals`` (by seed) skip
    the training step for those seeds: a benchmark of several forget settings trains once.
    """
    given = {**(originals or {}), **({original.seed: original} if original else {})}
    # threads, load and device at the start, so a time can be judged
    machine = {**thread_report(), **current_runtime().describe()}
    start = time.perf_counter()
    with measure_cost() as cost:
        bundle = bundle or load_bundle(cfg)
    stages = [stage_record("load data", cost)]
    select_forget(bundle.train, cfg.forget, cfg.seeds[0])  # fail fast on a bad spec
    if model is None:
        probe = create_model(
            cfg.model, bundle.num_classes, bundle.in_chans, bundle.image_size, **cfg.model_options
        )
    else:
        probe = prepare_model(copy.deepcopy(model), bundle.num_classes)
    trainable, total = count_parameters(probe, select_trainable(probe, cfg.peft))
    runs = [
        row
        for seed in cfg.seeds
        for row in run_seed(
            cfg,
            bundle,
            seed,
            progress,
            given.get(seed),
            stages,
            on_unlearned,
            model,
        )
    ]
    return {
        "dataset": cfg.dataset,
        "model": cfg.model if model is None else type(model).__name__,
        "forget": cfg.forget,
        "seeds": cfg.seeds,
        "peft": cfg.peft,
        "trainable_params": trainable,
        "total_params": total,
        "head_params": len(head_parameter_names(probe)),
        "config": cfg.model_dump(mode="json"),
        "machine": machine,
        "stages": stages,
        "wall_s": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "runs": runs,
        "summary": summarise(runs),
    }
