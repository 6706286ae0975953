"""Fast-NTK benchmark: quality on digits and scaling of the NTK state on synthetic 32x32 data.

  PYTHONPATH=src python benchmarks/fast_ntk.py            # both parts -> results/fast_ntk/
  PYTHONPATH=src python benchmarks/fast_ntk.py --part scaling

Quality: pretrain on a public split, train the PEFT set on D, forget (class 3 / random 10%),
compare retrain, finetune, fast_ntk (linearized and paper modes) and the full-model ntk where
it fits: accuracies, MIA, ToW, relearn epochs, time. fast_ntk goes through its NTK state: one
precompute per (model, seed), then each forget request is a Woodbury downdate.
Scaling: resnet18 + bn on synthetic 32x32 images; precompute time, per-deletion latency for
k = 1, 10, 100, peak memory, and the retrain time measured in the same process. What cannot
be run on 2 CPU cores within the budget is extrapolated from measured throughput and labelled.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import unlearnkit.methods.fast_ntk
import unlearnkit.methods.ntk
import unlearnkit.models.prompts  # noqa: F401 - registers vit_tiny_vpt / prompts
from unlearnkit.config import ExperimentConfig
from unlearnkit.data import load_dataset
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import evaluate, load_bundle, train_original
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.metrics import measure_cost, tow, tow_mia
from unlearnkit.metrics.cost import resident_bytes
from unlearnkit.models import count_parameters, create_model, select_trainable
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.ntk import (
    NTKState,
    ParamSpace,
    accumulate_gram,
    available_memory,
    delete_samples,
    estimate,
    precompute_state,
)
from unlearnkit.ntk.update import Solutions, apply_paper_update, linearized_model
from unlearnkit.training import TrainConfig, train

OUT = Path("results/fast_ntk")
GIB = 2**30
MODELS = {  # (model, peft, model options, pretrain epochs, train epochs)
    "smallcnn": ("smallcnn", "bn", {}, 10, 15),
    "resnet18": ("resnet18", "bn", {}, 4, 6),
    "vit_tiny": ("vit_tiny_vpt", "prompts", {"depth": 4, "num_prompts": 5}, 6, 8),
}
FORGETS = ["class:3", "random:0.1"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- quality --------------------
def quality_cfg(key: str, forget: str) -> ExperimentConfig:
    model, peft, opts, pre, epochs = MODELS[key]
    return ExperimentConfig(
        model=model,
        peft=peft,
        model_options=opts,
        forget=forget,
        pretrain_config=TrainConfig(epochs=pre, lr=0.05),
        train=TrainConfig(epochs=epochs, lr=0.05),
        methods=["retrain"],
    )


def run_method(
    name: str, fn, ctx: UnlearningContext, cfg: ExperimentConfig, original
) -> dict[str, Any]:
    with measure_cost() as cost:
        model = fn(ctx)
    row = {
        "method": name,
        **evaluate(model, ctx, cfg),
        "time_s": cost.time_s,
        "peak_mem_mb": cost.peak_mem_mb,
    }
    ref = dict(original.named_parameters())
    row["params_touched"] = int(
        sum((p.detach() != ref[n].detach()).sum() for n, p in model.named_parameters())
    )
    return row


def quality_seed(key: str, seed: int, full_ntk: bool) -> list[dict[str, Any]]:
    cfg = quality_cfg(key, FORGETS[0])
    bundle = load_bundle(cfg)
    log(f"quality {key} seed {seed}: training on D ({len(bundle.train)} samples)")
    original = train_original(cfg, bundle, seed)
    trainable, total = count_parameters(original.model, original.trainable)
    with measure_cost() as pre_cost:
        state = precompute_state(
            original.model,
            original.trainable,
            original.initial_state,
            bundle.train,
            bundle.num_classes,
            lam=0.1,
        )
    rows: list[dict[str, Any]] = []
    for forget in FORGETS:
        cfg = quality_cfg(key, forget)
        ids = select_forget(bundle.train, forget, seed)
        ctx = UnlearningContext(
            model=original.model,
            initial_state=original.initial_state,
            retain=bundle.train.drop_ids(ids),
            forget=bundle.train.select_ids(ids),
            test=bundle.test,
            num_classes=bundle.num_classes,
            trainable=original.trainable,
            train_config=cfg.train.model_copy(update={"seed": seed}),
            peft=cfg.peft,
            seed=seed,
        )

        def with_copy(fn):
            def run(c: UnlearningContext):
                c = copy.copy(c)
                c.model = copy.deepcopy(original.model)
                return fn(c)

            return run

        def ntk_from_state(mode: str):
            def run(c: UnlearningContext):
                st = copy.deepcopy(state)
                delete_samples(c.model, st, c.initial_state, c.forget)
                if mode == "linearized":
                    return linearized_model(c.model, c.trainable, c.initial_state, st.solution)
                sol = Solutions(st.solution_full, st.solution, "primal")
                apply_paper_update(c.model, c.trainable, c.initial_state, sol, "angle")
                return c.model

            return run

        methods = [
            ("original", lambda c: c.model),
            ("retrain", create_method("retrain").unlearn),
            ("finetune", create_method("finetune").unlearn),
            ("fast_ntk", ntk_from_state("linearized")),
            ("fast_ntk_paper", ntk_from_state("paper")),
        ]
        if full_ntk and forget == FORGETS[0]:
            methods.append(("ntk", create_method("ntk").unlearn))
        for name, fn in methods:
            log(f"  {key} seed {seed} {forget}: {name}")
            try:
                row = run_method(name, with_copy(fn), ctx, cfg, original.model)
            except UnlearnkitError as exc:  # e.g. the full-model NTK refused for memory
                row = {"method": name, "refused": str(exc)}
            rows.append(
                {
                    "model": key,
                    "seed": seed,
                    "forget": forget,
                    "peft": cfg.peft,
                    "trainable_params": trainable,
                    "total_params": total,
                    "ntk_precompute_s": pre_cost.time_s,
                    **row,
                }
            )
        ref = next(r for r in rows if r["forget"] == forget and r["method"] == "retrain")
        for r in rows:
            if r["forget"] == forget and "acc" in r:
                r["tow"] = tow(r["acc"], ref["acc"])
                r["tow_mia"] = tow_mia(r["acc"], r["mia_efficacy"], ref["acc"], ref["mia_efficacy"])
    return rows


def full_ntk_fits(key: str) -> tuple[bool, str]:
    """The full-model dual solve's memory estimate on digits vs this machine."""
    model, _, opts, _, _ = MODELS[key]
    net = create_model(model, 10, 1, 8, **opts)
    p = sum(q.numel() for q in net.parameters())
    est = estimate("dual", p, 1257 * 10, 10, 32)
    avail = available_memory()
    return est.bytes < 0.8 * avail, f"P={p:,}: dual needs {est.gib:.1f} GiB, {avail / GIB:.1f} free"


# ---------------------------------------------------------------- scaling --------------------
def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def scaling(sizes: list[int], recipe_epochs: int, chunk: int = 32) -> dict[str, Any]:
    torch.manual_seed(0)
    bundle = load_dataset("synthetic", n_train=1000, n_test=10, image_size=32, channels=3)
    model = create_model("resnet18", 10, 3, 32)
    names = select_trainable(model, "bn")
    space = ParamSpace.from_model(model, names)
    p, total = count_parameters(model, names)
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log(f"scaling: resnet18 bn P={p:,} of {total:,}")
    # 1. retrain cost on this machine: seconds per sample of one SGD step (after a warm-up)
    probe = copy.deepcopy(model)
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=64, seed=0)
    train(probe, bundle.train.subset(torch.arange(64)), cfg, names)
    t = time.perf_counter()
    train(probe, bundle.train.subset(torch.arange(192)), cfg, names)
    train_s_per_sample = (time.perf_counter() - t) / 192
    # 2. precompute throughput: Jacobian + Gram accumulation over the first 128 samples
    # (they include every sample deleted below, so A - U^T U stays a valid Gram)
    x, y = bundle.train.x[:128], bundle.train.y[:128]
    t = time.perf_counter()
    stats = accumulate_gram(model, space, x, y, 10, w0, chunk)
    jac_s_per_sample = (time.perf_counter() - t) / len(x)
    log(f"  train {train_s_per_sample:.3f} s/sample, jacobian+gram {jac_s_per_sample:.3f} s/sample")
    # 3. factorisation (once, independent of N)
    rss0 = resident_bytes()
    t = time.perf_counter()
    base = NTKState.from_gram(
        list(space.names),
        [list(s) for s in space.shapes],
        stats.gram,
        stats.rhs,
        0.1,
        10,
        torch.arange(len(x)),
        {},
    )
    inverse_s = time.perf_counter() - t
    state_gib = 3 * p * p * 8 / GIB
    log(f"  inverse of A + lambda I ({p}x{p}) in {inverse_s:.1f}s")
    rows = []
    for n in sizes:
        state = NTKState(  # a fresh copy per N: deletions update the state in place
            base.names,
            base.shapes,
            base.lam,
            10,
            base.gram.clone(),
            base.rhs.clone(),
            base.inverse.clone(),
            torch.arange(n),
            torch.ones(n, dtype=torch.bool),
            base.solution_full,
            {},
        )
        row: dict[str, Any] = {
            "N": n,
            "P": p,
            "total_params": total,
            "precompute_s_extrapolated": n * jac_s_per_sample + inverse_s,
            "retrain_s_extrapolated": n * train_s_per_sample * recipe_epochs,
            "latency_s": {},
        }
        next_id = 0
        for k in (1, 10, 100):
            if k == 100 and n not in (sizes[1], sizes[-1]):
                continue
            ids = torch.arange(next_id, next_id + k)
            next_id += k
            samples = bundle.train.select_ids(ids)
            t = time.perf_counter()
            delete_samples(model, state, w0, samples)
            row["latency_s"][str(k)] = time.perf_counter() - t
            assert int((~state.alive).sum()) == next_id
            log(f"  N={n} k={k}: {row['latency_s'][str(k)]:.2f}s")
        row["peak_rss_gib"] = peak_rss_gib()
        full = estimate("dual", total, n * 10, 10, chunk)
        row["full_ntk_dual_gib"] = full.gib
        row["full_ntk_primal_gib"] = estimate("primal", total, n * 10, 10, chunk).gib
        row["full_ntk_fits"] = full.bytes < available_memory()
        rows.append(row)
        del state
    del rss0
    fit_n = 0
    while estimate("dual", total, (fit_n + 1) * 10, 10, 1).bytes < available_memory():
        fit_n += 1
    return {
        "model": "resnet18",
        "peft": "bn",
        "P": p,
        "total_params": total,
        "image_size": 32,
        "recipe_epochs": recipe_epochs,
        "chunk": chunk,
        "train_s_per_sample": train_s_per_sample,
        "jac_s_per_sample": jac_s_per_sample,
        "inverse_s": inverse_s,
        "state_gib": state_gib,
        "available_gib": available_memory() / GIB,
        "full_ntk_max_n": fit_n,
        "rows": rows,
        "notes": (
            "precompute and retrain times are measured throughput x N (the full "
            "passes at N >= 500 exceed the 2-core budget); per-deletion latencies "
            "are measured on a state of N ids whose P x P matrices come from the "
            "measured chunk (their cost does not depend on where A came from)."
        ),
    }


# ---------------------------------------------------------------- report ---------------------
def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from unlearnkit.metrics import mean_ci95

    out = []
    keys = dict.fromkeys((r["model"], r["forget"], r["method"]) for r in rows if "acc" in r)
    for model, forget, method in keys:
        rs = [
            r
            for r in rows
            if (r["model"], r["forget"], r["method"]) == (model, forget, method) and "acc" in r
        ]
        entry = {"model": model, "forget": forget, "method": method, "seeds": len(rs)}
        for part in ("retain", "forget", "test"):
            entry[part] = sum(r["acc"][part] for r in rs) / len(rs)
        for key in ("mia_efficacy", "time_s", "tow", "tow_mia"):
            entry[key] = sum(r[key] for r in rs) / len(rs)
        entry["tow_ci95"] = mean_ci95([r["tow"] for r in rs])[1]
        rel = [r["relearn_epochs"] for r in rs if r["relearn_epochs"] is not None]
        entry["relearn_epochs"] = sum(rel) / len(rel) if rel else None
        entry["relearn_censored"] = len(rs) - len(rel)
        out.append(entry)
    return out


def figures(doc: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = doc.get("scaling")
    if sc:
        ns = [r["N"] for r in sc["rows"]]
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in ("1", "10", "100"):
            pts = [(r["N"], r["latency_s"][k]) for r in sc["rows"] if k in r["latency_s"]]
            ax.plot(*zip(*pts, strict=True), "o-", label=f"fast_ntk deletion, k={k}")
        ax.plot(
            ns,
            [r["retrain_s_extrapolated"] for r in sc["rows"]],
            "k--",
            label="retrain (measured s/sample x N x epochs)",
        )
        ax.plot(
            ns,
            [0.01 * r["retrain_s_extrapolated"] for r in sc["rows"]],
            "k:",
            label="1% of retrain",
        )
        ax.plot(
            ns,
            [r["precompute_s_extrapolated"] for r in sc["rows"]],
            "s-",
            color="grey",
            label="one-time precompute (extrapolated)",
        )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="training set size N",
            ylabel="seconds",
            title="resnet18 + bn, 32x32, 2 CPU cores",
        )
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(OUT / "latency_vs_n.png", dpi=120)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(ns, [r["peak_rss_gib"] for r in sc["rows"]], "o-", label="fast_ntk peak RSS")
        ax.plot(
            ns,
            [r["full_ntk_dual_gib"] for r in sc["rows"]],
            "s--",
            label="full-model NTK, dual (estimate)",
        )
        ax.axhline(sc["available_gib"], color="r", ls=":", label="available on this machine")
        ax.set(
            xscale="log", yscale="log", xlabel="training set size N", ylabel="GiB", title="memory"
        )
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(OUT / "memory_vs_n.png", dpi=120)
    summary = doc.get("quality_summary")
    if summary:
        groups = list(dict.fromkeys((s["model"], s["forget"]) for s in summary))
        methods = list(dict.fromkeys(s["method"] for s in summary))
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, part in zip(axes, ("forget", "test"), strict=True):
            width = 0.8 / len(methods)
            for i, m in enumerate(methods):
                vals = [
                    next(
                        (
                            s[part]
                            for s in summary
                            if (s["model"], s["forget"]) == g and s["method"] == m
                        ),
                        math.nan,
                    )
                    for g in groups
                ]
                ax.bar([j + i * width for j in range(len(groups))], vals, width, label=m)
            ax.set_xticks(
                [j + 0.4 - width / 2 for j in range(len(groups))],
                [f"{g[0]}\n{g[1]}" for g in groups],
                fontsize=7,
            )
            ax.set_ylabel(f"{part} accuracy (%)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(OUT / "quality.png", dpi=120)


def fmt(v: Any, spec: str = ".1f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def report(doc: dict[str, Any]) -> str:
    lines = ["# Fast-NTK benchmark", "", f"Machine: {doc['machine']}", ""]
    if doc.get("quality_summary"):
        lines += [
            "## Quality (digits, mean over seeds)",
            "",
            "| model | forget | method | seeds | retain | forget | test | MIA | ToW | "
            "relearn ep. | time s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in doc["quality_summary"]:
            rel = fmt(s["relearn_epochs"]) + (
                f" ({s['relearn_censored']} >max)" if s["relearn_censored"] else ""
            )
            lines.append(
                f"| {s['model']} | {s['forget']} | {s['method']} | {s['seeds']} | "
                f"{fmt(s['retain'])} | {fmt(s['forget'])} | {fmt(s['test'])} | "
                f"{fmt(s['mia_efficacy'])} | {fmt(s['tow'], '.3f')} | {rel} | "
                f"{fmt(s['time_s'])} |"
            )
        refused = {r["model"]: r["refused"] for r in doc["quality"] if "refused" in r}
        for model, why in {**refused, **doc.get("full_ntk_skipped", {})}.items():
            lines.append(f"\nfull-model ntk on {model}: {why}")
        lines.append("")
    sc = doc.get("scaling")
    if sc:
        lines += [
            "## Scaling (resnet18 + bn, synthetic 32x32)",
            "",
            f"P = {sc['P']:,} trainable of {sc['total_params']:,}; state (A, H, temp) "
            f"{sc['state_gib']:.1f} GiB; factorisation {sc['inverse_s']:.0f} s (once); "
            f"retrain {sc['train_s_per_sample']:.3f} s/sample x {sc['recipe_epochs']} "
            f"epochs; Jacobian+Gram {sc['jac_s_per_sample']:.3f} s/sample.",
            "",
            "| N | precompute s (extrap.) | retrain s (extrap.) | k=1 s | k=10 s | "
            "k=100 s | k=100 / retrain | peak RSS GiB | full NTK dual GiB (est.) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sc["rows"]:
            lat = r["latency_s"]
            ratio = lat.get("100", lat["10"]) / r["retrain_s_extrapolated"]
            lines.append(
                f"| {r['N']:,} | {r['precompute_s_extrapolated']:.0f} | "
                f"{r['retrain_s_extrapolated']:.0f} | {lat['1']:.2f} | {lat['10']:.2f} | "
                f"{fmt(lat.get('100'), '.1f')} | {100 * ratio:.2f}% | "
                f"{r['peak_rss_gib']:.1f} | {r['full_ntk_dual_gib']:,.0f} |"
            )
        lines += [
            "",
            f"Full-model NTK (dual) fits this machine up to N = {sc['full_ntk_max_n']} "
            "samples; it is refused (MemoryBudgetError) at every N above.",
            "",
            sc["notes"],
            "",
            "![latency](latency_vs_n.png) ![memory](memory_vs_n.png)",
        ]
    if doc.get("targets"):
        lines += ["", "## Targets", ""] + [f"- {t}" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


def targets(doc: dict[str, Any]) -> list[str]:
    out = []
    sc = doc.get("scaling")
    if sc:
        rows = {r["N"]: r for r in sc["rows"]}
        first, last = rows[min(rows)], rows[max(rows)]
        for r in (rows.get(1000, first), last):
            for k, lat in r["latency_s"].items():
                ratio = lat / r["retrain_s_extrapolated"]
                out.append(
                    f"latency k={k} at N={r['N']:,}: {100 * ratio:.3f}% of retrain "
                    f"({'met' if ratio <= 0.01 else 'MISSED'}; target <= 1%)"
                )
        base = rows.get(1000, first)
        for k in base["latency_s"]:
            if k in last["latency_s"]:
                g = last["latency_s"][k] / base["latency_s"][k]
                out.append(
                    f"latency growth N={base['N']:,} -> {last['N']:,}, k={k}: {g:.2f}x "
                    f"({'met' if g < 2 else 'MISSED'}; target < 2x)"
                )
        out.append(
            f"peak memory at N={last['N']:,}: {last['peak_rss_gib']:.1f} GiB "
            f"({'met' if last['peak_rss_gib'] < 20 else 'MISSED'}; target < 20 GiB)"
        )
    for s in doc.get("quality_summary", []):
        if s["method"] != "fast_ntk":
            continue
        ref = next(
            r
            for r in doc["quality_summary"]
            if r["method"] == "retrain" and (r["model"], r["forget"]) == (s["model"], s["forget"])
        )
        df, dt = abs(s["forget"] - ref["forget"]), abs(s["test"] - ref["test"])
        ok = df <= 5 and dt <= 3
        out.append(
            f"quality {s['model']} {s['forget']}: |forget - retrain| = {df:.1f}, "
            f"|test - retrain| = {dt:.1f} ({'met' if ok else 'MISSED'}; bounds 5 / 3)"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "quality", "scaling", "report"], default="all")
    ap.add_argument("--models", default="smallcnn,resnet18,vit_tiny")
    ap.add_argument("--seeds", default="smallcnn=3,resnet18=1,vit_tiny=1")
    ap.add_argument("--sizes", default="500,1000,5000,20000,50000")
    ap.add_argument("--recipe-epochs", type=int, default=30)
    ap.add_argument("--full-ntk", default="smallcnn", help="models to try the full-model ntk on")
    args = ap.parse_args()
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    doc: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    doc["machine"] = f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    if args.part in ("all", "scaling"):
        doc["scaling"] = scaling([int(n) for n in args.sizes.split(",")], args.recipe_epochs)
        atomic_write_text(path, json.dumps(doc, indent=1))
    if args.part in ("all", "quality"):
        seeds = {k: int(v) for k, v in (s.split("=") for s in args.seeds.split(","))}
        rows, skipped = [], {}
        for key in args.models.split(","):
            want_full = key in args.full_ntk.split(",")
            fits, why = full_ntk_fits(key)
            if not fits:
                skipped[key] = f"refused by the memory estimate ({why})"
            for seed in range(seeds.get(key, 1)):
                rows += quality_seed(key, seed, want_full and fits and seed == 0)
                doc["quality"], doc["full_ntk_skipped"] = rows, skipped
                doc["quality_summary"] = summarise(rows)
                atomic_write_text(path, json.dumps(doc, indent=1))
    doc["targets"] = targets(doc)
    atomic_write_text(path, json.dumps(doc, indent=1))
    figures(doc)
    atomic_write_text(OUT / "report.md", report(doc))
    log("wrote results/fast_ntk/{results.json,report.md,*.png}")


if __name__ == "__main__":
    main()
