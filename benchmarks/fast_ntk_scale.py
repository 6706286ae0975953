"""Fast-NTK's output scale on digits (issue 27 part 3): for each option, accuracy, test ECE,
the forget examples' logit-scaled confidence, relearn time, and the per-example audit
(U-LiRA AUC, F ours, F official) against retraining.

Options (``fast_ntk`` parameters): one-hot targets (the old default), a temperature fitted on
D_r, targets s (onehot - 1/C), and both. Controls: retrain (SGD on D_r), the original, and the
linearized model trained from scratch on D_r alone by an independent solve (the exact control
within the linearized class: its relearn time separates the model class's dynamics from
knowledge of D_f left behind), and w0's linearized model (no training at all).

    python benchmarks/fast_ntk_scale.py --part calibration --settings class3 --seeds 0,1,2
    python benchmarks/fast_ntk_scale.py --part audit --settings class3 --k 8
    python benchmarks/fast_ntk_scale.py --part calibration --seeds 0 --subset 300 --epochs 2
                                                                    # a smoke run (a minute)

Writes results/audit/fast_ntk_scale/{calibration,audit}_<setting>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.audit import audit_config, run_audit
from unlearnkit.audit.jobs import REFERENCE_SEED_OFFSET
from unlearnkit.config import build_config
from unlearnkit.data.forget import select_forget
from unlearnkit.experiment import unlearning_context
from unlearnkit.methods import METHODS, create_method
from unlearnkit.methods.base import register_method
from unlearnkit.methods.fast_ntk import FastNTK
from unlearnkit.metrics import accuracy, relearn_epochs
from unlearnkit.metrics.audit_stats import logit_confidence
from unlearnkit.metrics.calibration import expected_calibration_error
from unlearnkit.models import create_model, reset_head, select_trainable
from unlearnkit.ntk import ParamSpace, accumulate_gram, solve_primal
from unlearnkit.ntk.deployment import calibrate
from unlearnkit.ntk.solvers import regularized_inverse
from unlearnkit.ntk.update import linearized_model, posterior_sample
from unlearnkit.recipe import TrainedModel, load_bundle, starting_model
from unlearnkit.runtime import apply_threads
from unlearnkit.training import predict_logits, train

SETTINGS = {"random10": "random:0.1", "class3": "class:3"}
OPTIONS: dict[str, dict[str, Any]] = {
    "onehot": {"target": "onehot", "temperature": "none"},
    "onehot+T": {"target": "onehot", "temperature": "fit"},
    "scaled5": {"target": "scaled", "target_scale": 5.0, "temperature": "none"},
    "scaled10": {"target": "scaled", "target_scale": 10.0, "temperature": "none"},
    "scaled20": {"target": "scaled", "target_scale": 20.0, "temperature": "none"},
    "scaled10+T": {"target": "scaled", "target_scale": 10.0, "temperature": "fit"},
    "scaled10+noise0.3": {"target": "scaled", "target_scale": 10.0, "noise": 0.3},
    "scaled10+noise1": {"target": "scaled", "target_scale": 10.0, "noise": 1.0},
    "scaled10+noise3": {"target": "scaled", "target_scale": 10.0, "noise": 3.0},
}


def trained_on(cfg, bundle, start_state, split, seed) -> TrainedModel:
    """The audit's recipe: the shared pretrained backbone, a new head for ``seed``, PEFT
    parameters trained on ``split``."""
    b = bundle
    model = create_model(cfg.model, b.num_classes, b.in_chans, b.image_size, **cfg.model_options)
    model.load_state_dict(start_state)
    reset_head(model, seed)
    trainable = select_trainable(model, cfg.peft)
    initial = copy.deepcopy(model.state_dict())
    train(model, split, cfg.train.model_copy(update={"seed": seed}), trainable)
    return TrainedModel(model, initial, trainable, seed)


def scratch_linearized(ctx, lam, target_scale, temperature, noise: float = 0.0):
    """The linearized model fitted on D_r alone (one Gram of D_r, its own solve, the noise
    drawn from D_r's own (A + lam I)^-1 with the run's seed): the exact control of fast_ntk
    within the linearized class."""
    space = ParamSpace.from_model(ctx.model, ctx.trainable)
    stats = accumulate_gram(
        ctx.model,
        space,
        ctx.retain.x,
        ctx.retain.y,
        ctx.num_classes,
        ctx.initial_state,
        target_scale=target_scale,
    )
    solution = solve_primal(stats.gram, stats.rhs, lam)
    if noise > 0:
        inverse = regularized_inverse(stats.gram, lam)
        solution = posterior_sample(solution, inverse, noise, ctx.seed)
    model = linearized_model(ctx.model, ctx.trainable, ctx.initial_state, solution)
    calibrate(model, ctx.retain, temperature)
    return model


def measure(model, ctx, relearn: bool) -> dict[str, Any]:
    logits = predict_logits(model, ctx.forget.x).numpy()
    phi = logit_confidence(logits, ctx.forget.y.numpy())
    row = {
        "acc_retain": accuracy(model, ctx.retain),
        "acc_forget": accuracy(model, ctx.forget),
        "acc_test": accuracy(model, ctx.test),
        "ece_test": expected_calibration_error(model, ctx.test),
        "phi_forget_mean": float(phi.mean()),
        "phi_forget_sd": float(phi.std()),
        "temperature": float(getattr(model, "temperature", 1.0)),
    }
    if relearn:
        row["relearn_epochs"] = relearn_epochs(model, ctx.forget, ctx.trainable, seed=ctx.seed)
    return row


def calibration_part(cfg, bundle, start_state, seeds, options, relearn) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        forget_ids = select_forget(bundle.train, cfg.forget, seed)
        original = trained_on(cfg, bundle, start_state, bundle.train, seed)
        ctx = unlearning_context(cfg, bundle, original, forget_ids, seed)
        retrained = trained_on(cfg, bundle, start_state, ctx.retain, seed + REFERENCE_SEED_OFFSET)
        rows.append({"seed": seed, "model": "original", **measure(original.model, ctx, relearn)})
        rows.append({"seed": seed, "model": "retrain", **measure(retrained.model, ctx, relearn)})
        if relearn:  # w0's linearized model: the pretrained features, a new head, no training
            space = ParamSpace.from_model(ctx.model, ctx.trainable)
            at_w0 = linearized_model(
                ctx.model, ctx.trainable, ctx.initial_state, torch.zeros(space.numel)
            )
            rows.append({"seed": seed, "model": "linearized_at_w0", **measure(at_w0, ctx, True)})
        for name, params in options.items():
            run = copy.copy(ctx)
            run.model = copy.deepcopy(original.model)
            method = create_method("fast_ntk", **params)
            model = method.unlearn(run)
            rows.append(
                {"seed": seed, "model": f"fast_ntk[{name}]", **measure(model, ctx, relearn)}
            )
            if relearn:  # the exact control in the class, by an independent solve
                p = method.params
                control = scratch_linearized(ctx, p.lam, p.target_value, p.temperature, p.noise)
                gap = float(
                    (predict_logits(control, ctx.test.x) - predict_logits(model, ctx.test.x))
                    .abs()
                    .max()
                )
                rows.append(
                    {
                        "seed": seed,
                        "model": f"scratch_on_Dr[{name}]",
                        "max_logit_gap_to_fast_ntk": gap,
                        "control_has_noise": True,
                        **measure(control, ctx, relearn),
                    }
                )
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        entry: dict[str, Any] = {"n_seeds": len(mine)}
        for key in mine[0]:
            if key in ("seed", "model"):
                continue
            values = [r[key] for r in mine]
            if key == "relearn_epochs":
                entry[key] = values
                done = [v for v in values if v is not None]
                entry["relearn_censored"] = len(values) - len(done)
                entry["relearn_epochs_mean"] = (
                    float(np.mean(done)) if len(done) == len(values) else None
                )
            else:
                entry[key] = float(np.mean(values))
        out[name] = entry
    return out


def alias(option: str) -> str:
    """The audit row of one option: fast_ntk registered again under its own name, so that one
    audit trains each original once and unlearns it with every option."""
    name = "fast_ntk_" + option.replace("+", "_")
    if name not in METHODS.names():
        register_method(type(f"FastNTK_{len(METHODS.names())}", (FastNTK,), {"name": name}))
    return name


AUDIT_KEYS = (
    "auc",
    "auc_ci95",
    "tpr_at_1pct_fpr",
    "forgetting_quality",
    "forgetting_quality_ci95",
    "forgetting_quality_official",
    "forgetting_quality_official_ci95",
    "retain_acc_unlearned",
    "retain_acc_retrained",
    "test_acc_unlearned",
    "test_acc_retrained",
    "score",
    "final_score_official",
)


def audit_part(overrides, spec, options, k, cache) -> dict[str, Any]:
    rows = {alias(name): params for name, params in options.items()}
    cfg = build_config(
        {**overrides, "method_params": rows},
        forget=spec,
        model="smallcnn",
        peft="bn",
        methods=["retrain", *rows],
    )
    run = run_audit(
        cfg, audit_config(k=k, n=k), cache, progress=lambda d, t: print(f"models {d}/{t}")
    )
    s = run.results["summary"]
    out: dict[str, Any] = {
        "k": k,
        "n": k,
        "control": run.results["control"],
        "cost": run.results["cost"],
    }
    out["retrain"] = {key: s["retrain"][key] for key in AUDIT_KEYS}
    for name, params in options.items():
        out[name] = {"params": params, **{key: s[alias(name)][key] for key in AUDIT_KEYS}}
        print(name, json.dumps(out[name]), flush=True)
    return out


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return f"{value:.{digits}f}"


def relearn_cell(entry: dict[str, Any]) -> str:
    values = entry.get("relearn_epochs")
    if values is None:
        return "-"
    shown = ", ".join(">20" if v is None else f"{v:.0f}" for v in values)
    mean = entry.get("relearn_epochs_mean")
    return f"{fmt(mean, 1)} ({shown})" if mean is not None else f">= ({shown})"


def report(out: Path) -> str:
    """report.md from the JSON files in ``out``: one calibration and one audit table per
    setting (calibration rows averaged over the seed files found)."""
    lines = ["# Fast-NTK output scale on digits (smallcnn + bn)", ""]
    for setting, spec in SETTINGS.items():
        rows: list[dict[str, Any]] = []
        for path in sorted(out.glob(f"calibration_{setting}_seed*.json")):
            rows += [
                r
                for r in json.loads(path.read_text())["result"]["rows"]
                # an early version of the control drew no noise: not the control of a noisy row
                if not ("noise" in r["model"] and r["model"].startswith("scratch"))
                or r.get("control_has_noise")
            ]
        if rows:
            summary = summarise(rows)
            seeds = sorted({r["seed"] for r in rows})
            lines += [
                f"## forget `{spec}`: accuracy, calibration, relearn (seeds {seeds})",
                "",
                "| model | retain % | forget % | test % | test ECE | phi on D_f (mean) "
                "| T | relearn epochs (per seed) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for name, e in summary.items():
                lines.append(
                    f"| {name} | {fmt(e['acc_retain'], 1)} | {fmt(e['acc_forget'], 1)} | "
                    f"{fmt(e['acc_test'], 1)} | {fmt(e['ece_test'])} | "
                    f"{fmt(e['phi_forget_mean'], 2)} | {fmt(e['temperature'])} | "
                    f"{relearn_cell(e)} |"
                )
            lines.append("")
        path = out / f"audit_{setting}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            res = doc["result"]
            models = res["cost"]["models"]
            lines += [
                f"## forget `{spec}`: per-example audit (K = N = {res['k']}, {models} models)",
                "",
                "| row | AUC [95% CI] | TPR@1% | F ours | F official | RA_U / RA_R | TA_U / TA_R |",
                "|---|---|---|---|---|---|---|",
            ]
            meta = ("control", "cost", "retrain", "k", "n")
            for name in ["retrain", *[n for n in res if n not in meta]]:
                e = res[name]
                lines.append(
                    f"| {name} | {fmt(e['auc'])} {fmt(e['auc_ci95'])} | "
                    f"{fmt(e['tpr_at_1pct_fpr'])} | {fmt(e['forgetting_quality'])} | "
                    f"{fmt(e['forgetting_quality_official'])} | "
                    f"{fmt(e['retain_acc_unlearned'], 1)} / {fmt(e['retain_acc_retrained'], 1)} | "
                    f"{fmt(e['test_acc_unlearned'], 1)} / {fmt(e['test_acc_retrained'], 1)} |"
                )
            control = res["control"]
            lines += ["", f"control covers chance: {control['covers_chance']}", ""]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["calibration", "audit", "report"], default="calibration")
    parser.add_argument("--settings", default="class3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--k", type=int, default=8, help="audit: K = N")
    parser.add_argument("--no-relearn", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/audit/fast_ntk_scale"))
    parser.add_argument("--cache", type=Path, default=Path("results/audit/cache"))
    parser.add_argument("--tag", default="", help="appended to the results file's name")
    args = parser.parse_args()
    apply_threads(args.threads)
    options = {n: OPTIONS[n] for n in args.options.split(",") if n}
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["train"] = {"epochs": args.epochs}
    if args.subset is not None:
        overrides["dataset_options"] = {"subset": args.subset}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "report":
        print(report(args.out))
        return
    for setting in [s for s in args.settings.split(",") if s]:
        spec = SETTINGS[setting]
        started = time.perf_counter()
        if args.part == "calibration":
            cfg = build_config(overrides, forget=spec, model="smallcnn", peft="bn")
            bundle = load_bundle(cfg)
            start_state = starting_model(cfg, bundle, 0).state_dict()
            seeds = [int(s) for s in args.seeds.split(",")]
            result = calibration_part(
                cfg, bundle, start_state, seeds, options, relearn=not args.no_relearn
            )
        else:
            result = audit_part(overrides, spec, options, args.k, args.cache)
        document = {
            "setting": setting,
            "forget": spec,
            "part": args.part,
            "options": options,
            "overrides": overrides,
            "wall_seconds": time.perf_counter() - started,
            "result": result,
        }
        path = args.out / f"{args.part}_{setting}{args.tag}.json"
        path.write_text(json.dumps(document, indent=1, default=str))
        print(f"-> {path}", flush=True)


if __name__ == "__main__":
    main()
