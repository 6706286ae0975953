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
from unlearnkit.data.base import ArraySplit
from unlearnkit.data.forget import select_forget
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.metrics import (
    INTERVAL_METHOD,
    RELEARN_BN,
    Cost,
    accuracy,
    censored_summary,
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
from unlearnkit.recipe import TrainedModel, load_bundle, sized_for, train_original
from unlearnkit.runtime import current_runtime, thread_report
from unlearnkit.training import channels_last

StepCallback = Callable[[str], None]  # told the name of each step as it starts
# Told each method's result as it is made (method name, its parameters, the context, the model):
# the CLI keeps the unlearned models this way to save them next to the run.
UnlearnedCallback = Callable[[str, Mapping[str, Any], UnlearningContext, nn.Module], None]


def evaluate(
    model: nn.Module,
    ctx: UnlearningContext,
    cfg: ExperimentConfig,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Accuracies, MIA and relearn time of ``model``; ``threshold``: the relearn threshold of
    this seed (``cfg.relearn_target`` of the original's accuracy on D_f), needed when the
    config's threshold is relative (the original's own row computes it from itself)."""
    acc = {
        "retain": accuracy(model, ctx.retain),
        "forget": accuracy(model, ctx.forget),
        "test": accuracy(model, ctx.test),
    }
    if threshold is None:
        threshold = cfg.relearn_target(None)
    return {
        "acc": acc,
        "acc_heldout": accuracy(model, heldout_split(ctx)),
        "mia_efficacy": mia_efficacy(model, ctx.retain, ctx.forget, ctx.test, seed=ctx.seed),
        "relearn_epochs": relearn_epochs(
            model,
            ctx.forget,
            ctx.trainable,
            threshold=threshold,
            max_epochs=cfg.relearn_max_epochs,
            seed=ctx.seed,
        ),
        "relearn_threshold": threshold,
    }


def heldout_split(ctx: UnlearningContext) -> ArraySplit:
    """Test samples of the classes D_r still holds: the held-out data on which the retrain
    reference must match the original (a class forget removes a class retrain never saw)."""
    kept = torch.isin(ctx.test.y, ctx.retain.y.unique())
    return ctx.test.subset(kept)


def evaluate_original(
    model: nn.Module, ctx: UnlearningContext, cfg: ExperimentConfig
) -> dict[str, Any]:
    """``evaluate`` of the shared original, in the fast layout and left as it was; its relearn
    threshold is the seed's (``relearn_threshold`` in the row, for every method)."""
    with channels_last(model):
        return evaluate(model, ctx, cfg, seed_threshold(model, ctx, cfg))


def seed_threshold(original: nn.Module, ctx: UnlearningContext, cfg: ExperimentConfig) -> float:
    """The relearn threshold of one seed: absolute, or the configured fraction of the
    original model's accuracy on this seed's D_f."""
    if cfg.relearn_threshold_fraction is None:
        return cfg.relearn_target(None)
    return cfg.relearn_target(accuracy(original, ctx.forget))


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
        bn_mode=cfg.bn_mode,
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
    threshold = rows[0]["relearn_threshold"]
    for name in cfg.methods:
        progress(f"seed {seed}: {name}")
        params = cfg.method_params.get(name, {})
        row, stage = run_method(cfg, name, params, base_ctx, original, on_unlearned, threshold)
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
    threshold: float | None = None,
) -> tuple[dict[str, Any], Cost]:
    """One method with ``params`` on a private copy of the original, then measured.

    Returns the result row (without ToW: that needs the retrain row) and the cost of the whole
    stage, unlearning plus evaluation. ``threshold``: the seed's relearn threshold (computed
    from the original when not given)."""
    if threshold is None:
        with channels_last(original.model):
            threshold = seed_threshold(original.model, base_ctx, cfg)
    method = create_method(name, **params)
    ctx = copy.copy(base_ctx)
    ctx.model = copy.deepcopy(original.model)
    with measure_cost() as stage, channels_last(ctx.model):
        with measure_cost() as cost:
            unlearned = method.run(ctx)
        measured = evaluate(unlearned, ctx, cfg, threshold)
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


def summarise(
    runs: list[dict[str, Any]], relearn_budget: int | None = None
) -> dict[str, dict[str, Any]]:
    """Per method: mean and 95% bootstrap interval of ToW and ToW-MIA (``metrics.intervals``),
    mean accuracies, MIA and cost, and relearn epochs with the censored seeds counted
    (``relearn_budget``: the epochs a censored seed ran, default the largest value seen)."""
    budget = relearn_budget or int(max((r["relearn_epochs"] or 0 for r in runs), default=0) or 1)
    summary: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        rows = [r for r in runs if r["method"] == method]
        entry: dict[str, Any] = {"n_seeds": len(rows)}
        for key in ("tow", "tow_mia"):
            mean, ci = mean_ci95([r[key] for r in rows])
            entry[f"{key}_mean"], entry[f"{key}_ci95"] = mean, list(ci) if ci else None
        for part in ("retain", "forget", "test"):
            entry[f"acc_{part}_mean"] = sum(r["acc"][part] for r in rows) / len(rows)
        if all("acc_heldout" in r for r in rows):
            entry["acc_heldout_mean"] = sum(r["acc_heldout"] for r in rows) / len(rows)
        for key in ("mia_efficacy", "time_s", "peak_mem_mb", "params_touched"):
            entry[f"{key}_mean"] = sum(r[key] for r in rows) / len(rows)
        relearn = censored_summary([r["relearn_epochs"] for r in rows], budget)
        entry["relearn_epochs_mean"] = relearn["mean"]  # None when any seed is censored
        entry["relearn_epochs"] = relearn
        summary[method] = entry
    return summary


def mia_control(runs: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Is the SVC attack informative here? Its spread on the exact control (retrain across
    seeds: same recipe, only the seed differs) against the methods' differences.

    ``informative`` is False when retrain's own range over seeds is at least the span of the
    methods' mean efficacies (original included): then any ranking by MIA efficacy or ToW-MIA
    is within the attack's seed noise. None with a single seed (no spread to judge by)."""
    control = [r["mia_efficacy"] for r in runs if r["method"] == "retrain"]
    means = {m: s["mia_efficacy_mean"] for m, s in summary.items()}
    spread = max(control) - min(control) if len(control) > 1 else None
    span = max(means.values()) - min(means.values())
    reference = summary["retrain"]["mia_efficacy_mean"]
    return {
        "retrain_per_seed": control,
        "retrain_spread": spread,
        "methods_span": span,
        "informative": None if spread is None else spread < span,
        "beyond_spread": (
            None
            if spread is None
            else {m: abs(v - reference) > spread for m, v in means.items() if m != "retrain"}
        ),
    }


def reference_check(summary: dict[str, dict[str, Any]], tolerance: float) -> dict[str, Any] | None:
    """Is retrain a well-trained reference? Its held-out accuracy (test samples of the classes
    D_r holds) must reach the original's within ``tolerance`` points; a method that beats it
    there by more than the tolerance is also named (a sign of an under-trained reference)."""
    if "acc_heldout_mean" not in summary.get("retrain", {}):
        return None
    ref = summary["retrain"]["acc_heldout_mean"]
    orig = summary["original"]["acc_heldout_mean"]
    above = [
        m
        for m, s in summary.items()
        if m not in ("retrain", "original") and s["acc_heldout_mean"] > ref + tolerance
    ]
    ok = ref >= orig - tolerance
    return {
        "retrain_heldout": ref,
        "original_heldout": orig,
        "tolerance": tolerance,
        "ok": ok,
        "methods_above_reference": above,
        "warning": None
        if ok and not above
        else (
            f"retrain reaches {ref:.1f}% on held-out data against the original's {orig:.1f}% "
            f"(tolerance {tolerance} points)"
            + (f"; {', '.join(above)} exceed it by more than the tolerance" if above else "")
            + ": the reference may be under-trained, ToW against it is suspect"
        ),
    }


def judged(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` (its runs) with the summary and the checks every reader needs next to it:
    intervals stated, relearn censoring, the MIA control, the reference check. The relearn
    budget and the tolerance come from ``results["config"]`` (defaults for older files), so a
    merged or re-read document is judged as the run was."""
    config = results.get("config", {})
    relearn_budget = config.get("relearn_max_epochs")
    default = ExperimentConfig.model_fields["reference_tolerance"].default
    tolerance = config.get("reference_tolerance", default)
    runs = results["runs"]
    summary = summarise(runs, relearn_budget)
    results["summary"] = summary
    results["intervals"] = {"method": INTERVAL_METHOD, "n_seeds": len(results["seeds"])}
    results["relearn_bn"] = RELEARN_BN
    if "bn_mode" in config:
        results["bn_mode"] = config["bn_mode"]
    if "retrain" in summary:
        results["mia_control"] = mia_control(runs, summary)
    if "retrain" in summary and "original" in summary:
        results["reference_check"] = reference_check(summary, tolerance)
    return results


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
    cfg = sized_for(cfg, bundle)  # epochs scaled to this data, recorded in results["config"]
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
    results = {
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
        "bn_mode": cfg.bn_mode,
        "runs": runs,
    }
    return judged(results)
