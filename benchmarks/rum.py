"""RUM: each baseline alone vs inside RUM (FZ scores or the best proxy), per forget set.

Needs ``benchmarks/memorization.py`` first (it writes the FZ scores, the proxy ranking and the
recipe, which this script reuses: data set, subset, label noise). Forget sets of N samples with
low, medium, high and mixed FZ memorization; ToW and ToW-MIA against retraining, mean and 95%
CI over 3 seeds.

    python benchmarks/rum.py                                     # noisy digits -> results/rum/
    python benchmarks/rum.py --mem results/fashion_mnist/memorization \
        --out results/fashion_mnist/rum --levels mixed --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).parent))
from memorization import primary_set, recipe_of

from unlearnkit.data.forget import select_forget
from unlearnkit.experiment import evaluate, unlearning_context
from unlearnkit.memorization import add_label_noise, save_scores
from unlearnkit.memorization.pipeline import proxy_scores
from unlearnkit.methods import create_method, method_defaults
from unlearnkit.metrics import mean_ci95, measure_cost, tow, tow_mia
from unlearnkit.models import select_trainable
from unlearnkit.recipe import TrainedModel, load_bundle, starting_model
from unlearnkit.runtime import apply_threads

BASELINES = ["finetune", "neggrad_plus", "salun"]
LEVELS = ["low", "mid", "high", "mixed"]


def variants(
    fz_file: Path, proxy_file: Path, proxy: str, baselines: list[str] = BASELINES
) -> dict[str, tuple[str, dict]]:
    """name -> (method, params): each baseline alone and inside RUM (same method per subset,
    each subset run a third of the method's default epochs, rounded up, so RUM[B] spends about
    what B alone does), and the paper's none/finetune/salun choice from configs/rum.yaml; RUM
    with FZ scores and with the best proxy."""
    out: dict[str, tuple[str, dict]] = {}
    sources = {"fz": f"file:{fz_file}", proxy: f"file:{proxy_file}"}
    for base in baselines:
        out[base] = (base, {})
        epochs = -(-method_defaults(base)["epochs"] // 3)
        for tag, source in sources.items():
            step = {"method": base, "params": {"epochs": epochs}}
            out[f"rum[{base}]/{tag}"] = (
                "rum",
                {"scores": source, "low": step, "medium": step, "high": step},
            )
    for tag, source in sources.items():
        out[f"rum[paper]/{tag}"] = (
            "rum",
            {"config": "configs/rum.yaml", "variant": "paper", "scores": source},
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mem", type=Path, default=Path("results/memorization"))
    ap.add_argument("--out", type=Path, default=Path("results/rum"))
    ap.add_argument("--forget-size", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--levels", default=",".join(LEVELS), help="comma-separated subset of levels")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--baselines", default=",".join(BASELINES), help="baselines run alone and inside RUM"
    )
    args = ap.parse_args()
    apply_threads(args.threads)
    levels = [lv for lv in args.levels.split(",") if lv]
    baselines = [b for b in args.baselines.split(",") if b]
    mem = json.loads((args.mem / "results.json").read_text())
    proxy = mem["best_proxy"]["name"]
    cfg = recipe_of(mem).model_copy(update={"relearn_max_epochs": 10})
    bundle = load_bundle(cfg)
    if mem["label_noise"] > 0:
        bundle, _ = add_label_noise(bundle, mem["label_noise"], seed=0)
    primary = primary_set(mem)
    fz_file = args.mem / f"fz_{primary}.csv"
    proxy_cost = mem["datasets"][primary]["proxies"][proxy]
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        tables, run = proxy_scores(cfg, bundle, [proxy], seed)  # trains the original once
        proxy_file = save_scores(tables[proxy], args.out / f"proxy_{proxy}_seed{seed}.csv")
        initial = starting_model(cfg, bundle, seed)
        original = TrainedModel(
            run.model,
            copy.deepcopy(initial.state_dict()),
            select_trainable(initial, cfg.peft),
            seed,
        )
        table = variants(fz_file, proxy_file, proxy, baselines)
        for level in levels:
            ids = select_forget(
                bundle.train, f"memorization:{level}:{args.forget_size}:{fz_file}", seed
            )
            ctx0 = unlearning_context(cfg, bundle, original, ids, seed)
            rows = []
            for name, (method, params) in {"retrain": ("retrain", {}), **table}.items():
                ctx = copy.copy(ctx0)
                ctx.model = copy.deepcopy(original.model)
                with measure_cost() as cost:
                    model = create_method(method, **params).run(ctx)  # with the BN policy
                print(f"  seed {seed} {level} {name}: {cost.time_s:.1f}s", flush=True)
                rows.append(
                    {
                        "variant": name,
                        "level": level,
                        "seed": seed,
                        **evaluate(model, ctx, cfg),
                        "time_s": cost.time_s,
                    }
                )
            ref = rows[0]
            for row in rows:
                row["tow"] = tow(row["acc"], ref["acc"])
                row["tow_mia"] = tow_mia(
                    row["acc"], row["mia_efficacy"], ref["acc"], ref["mia_efficacy"]
                )
            runs += rows
            print(
                f"seed {seed} {level}: "
                + ", ".join(f"{r['variant']}={r['tow']:.3f}" for r in rows),
                flush=True,
            )
    summary = summarise(runs, levels)
    result = {
        "dataset": mem.get("dataset", "digits"),
        "subset": mem.get("subset"),
        "label_noise": mem["label_noise"],
        "n_train": len(bundle.train),
        "threads": args.threads,
        "scoring_cost": {
            "fz_model_seconds": mem["datasets"][primary]["fz_model_seconds"],
            "proxy_seconds_incl_training": proxy_cost["proxy_seconds"]
            + mem["datasets"][primary]["train_seconds"],
            "proxy_cost_pct_of_fz": proxy_cost["cost_pct_incl_training"],
        },
        "proxy": proxy,
        "forget_size": args.forget_size,
        "seeds": args.seeds,
        "baselines": baselines,
        "levels": levels,
        "rum_subset_epochs": "a third of the method's default epochs per subset (rounded up)",
        "runs": runs,
        "summary": summary,
        "wall_s": time.perf_counter() - start,
        "targets": targets(summary, baselines) if "mixed" in summary else None,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    figure(summary, args.out / "tow.png")
    (args.out / "report.md").write_text(report(result))
    print(json.dumps(result["targets"], indent=2))


def summarise(runs: list[dict], levels: list[str]) -> dict:
    out: dict = {}
    for level in levels:
        out[level] = {}
        for name in dict.fromkeys(r["variant"] for r in runs):
            rows = [r for r in runs if r["level"] == level and r["variant"] == name]
            entry = {}
            for key in ("tow", "tow_mia"):
                mean, ci = mean_ci95([r[key] for r in rows])
                entry[key], entry[f"{key}_ci95"] = mean, list(ci) if ci else None
            for part in ("retain", "forget", "test"):
                entry[f"acc_{part}"] = sum(r["acc"][part] for r in rows) / len(rows)
            entry["mia"] = sum(r["mia_efficacy"] for r in rows) / len(rows)
            entry["time_s"] = sum(r["time_s"] for r in rows) / len(rows)
            out[level][name] = entry
    return out


def targets(summary: dict, baselines: list[str] = BASELINES) -> dict:
    mixed = summary["mixed"]
    best_single = max(baselines, key=lambda b: mixed[b]["tow"])
    rum = {k: v["tow"] for k, v in mixed.items() if k.startswith("rum")}
    best_rum = max(rum, key=rum.get)
    pairs = {
        name[: -len("/fz")]: (mixed[name]["tow"], next(
            v["tow"] for k, v in mixed.items() if k.startswith(name[: -len("fz")]) and k != name
        ))
        for name in mixed
        if name.startswith("rum") and name.endswith("/fz")
    }  # fmt: skip
    return {
        "proxy_vs_fz_tow": pairs,
        "best_single_on_mixed": best_single,
        "best_single_tow": mixed[best_single]["tow"],
        "best_rum_on_mixed": best_rum,
        "best_rum_tow": rum[best_rum],
        "rum_beats_best_single": rum[best_rum] >= mixed[best_single]["tow"],
    }


def figure(summary: dict, path: Path) -> None:
    levels = list(summary)
    names = [n for n in summary[levels[0]] if n != "retrain"]
    fig, axes = plt.subplots(
        1, len(levels), figsize=(4 * len(levels), 4.5), sharey=True, squeeze=False
    )
    for ax, level in zip(axes[0], levels, strict=True):
        vals = [summary[level][n]["tow"] for n in names]
        errs = [
            (summary[level][n]["tow"] - summary[level][n]["tow_ci95"][0])
            if summary[level][n]["tow_ci95"]
            else 0
            for n in names
        ]
        colors = [
            "tab:gray"
            if not n.startswith("rum")
            else ("tab:blue" if n.endswith("/fz") else "tab:orange")
            for n in names
        ]
        ax.barh(names, vals, xerr=errs, color=colors)
        ax.set_title(f"{level} memorization")
        ax.set_xlabel("ToW (95% CI)")
        ax.set_xlim(min(0.5, min(vals) - 0.05), 1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(r: dict) -> str:
    name = r.get("dataset", "digits")
    data = (f"noisy {name}" if r.get("label_noise", 0.05) > 0 else name) + (
        f", a {r['subset']}-sample subset" if r.get("subset") else ""
    )
    lines = [
        f"# RUM on {data} (smallcnn)",
        "",
        f"Forget sets of {r['forget_size']} samples chosen by Feldman-Zhang memorization "
        f"(low, mid, high, and mixed = a third of each); {r['seeds']} seeds; ToW and "
        f"ToW-MIA against retraining with 95% CI. RUM variants: `rum[B]` runs baseline B on "
        f"each subset (low -> medium -> high) ranked by FZ (`/fz`) or by the best proxy "
        f"(`/{r['proxy']}`), each subset run with a third of B's default epochs (rounded up) so "
        f"RUM[B] costs about what B alone does; `rum[paper]` = none / finetune (10 epochs, "
        f"lr 0.1) / salun (5 epochs, lr 0.1) from configs/rum.yaml. Methods otherwise at their "
        f"defaults (finetune 10 epochs lr 0.02; neggrad_plus 5 epochs lr 0.01 alpha 0.99; "
        f"salun 5 epochs lr 0.01).",
        "",
    ]
    for level in r["levels"]:
        lines += [
            f"## {level} memorization",
            "",
            "| variant | ToW | 95% CI | ToW-MIA | 95% CI | forget % | test % | MIA % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, e in r["summary"][level].items():
            ci = e["tow_ci95"] or [float("nan")] * 2
            cm = e["tow_mia_ci95"] or [float("nan")] * 2
            lines.append(
                f"| {name} | {e['tow']:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | "
                f"{e['tow_mia']:.3f} | [{cm[0]:.3f}, {cm[1]:.3f}] | "
                f"{e['acc_forget']:.1f} | {e['acc_test']:.1f} | {e['mia']:.1f} |"
            )
        lines.append("")
    c = r.get("scoring_cost")
    if c:
        lines += [
            "## Cost of the scores",
            "",
            f"FZ: {c['fz_model_seconds']:.0f} s of model training (K models). {r['proxy']}: "
            f"{c['proxy_seconds_incl_training']:.1f} s including its one training run = "
            f"{c['proxy_cost_pct_of_fz']:.2f}% of FZ.",
            "",
        ]
    t = r["targets"]
    if t:
        lines += [
            "## Target",
            "",
            f"Mixed forget set: best single method {t['best_single_on_mixed']} ToW "
            f"{t['best_single_tow']:.3f}; best RUM {t['best_rum_on_mixed']} ToW "
            f"{t['best_rum_tow']:.3f} -> RUM >= best single: {t['rum_beats_best_single']}.",
            "",
        ]
        if t.get("proxy_vs_fz_tow"):
            lines += [
                f"RUM with FZ scores vs with the {r['proxy']} proxy (ToW on the mixed set): "
                + "; ".join(
                    f"{k}: {a:.3f} vs {b:.3f} ({b - a:+.3f})"
                    for k, (a, b) in t["proxy_vs_fz_tow"].items()
                )
                + ".",
                "",
            ]
    lines += [
        f"Wall time of the whole benchmark: {r['wall_s'] / 60:.1f} min.",
        "",
        "Figure: `tow.png`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
