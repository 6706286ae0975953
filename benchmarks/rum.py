"""RUM: each baseline alone vs inside RUM (FZ scores or the best proxy), per forget set.

Needs ``benchmarks/memorization.py`` first (it writes the FZ scores, the proxy ranking and the
recipe, which this script reuses: data set, subset, label noise, epochs, the train-test gap
target). Forget sets of N samples with low, medium, high and mixed memorization, or ``random``
(a random share of D, ``--random-fraction``); the level sets are ranked by FZ (``--select fz``)
or by the seed's best proxy (``--select proxy``). ``--full-set`` runs on the whole training set
the scores' subset came from: no FZ there, so forget sets and RUM use the proxy. ToW and ToW-MIA
against retraining, mean and 95% CI over 3 seeds; each seed's original is checked for its
train-test gap (the run says plainly when the target is not reached).

    python benchmarks/rum.py                                     # noisy digits -> results/rum/
    python benchmarks/rum.py --mem results/fashion_mnist/memorization \
        --out results/fashion_mnist/rum --levels mixed --threads 2
    # the full-training setting (docs/memorization.md, "Where the model memorizes")
    python benchmarks/rum.py --mem results/fashion_mnist/memorization_full \
        --out results/fashion_mnist/rum_full --levels low,mid,high,random --threads 2
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
from memorization import epoch_grid, primary_set, recipe_of

from unlearnkit.atomic_files import atomic_write_text
from unlearnkit.data.forget import select_forget
from unlearnkit.experiment import evaluate, seed_threshold, unlearning_context
from unlearnkit.memorization import add_label_noise, save_scores
from unlearnkit.memorization.gap import gap_check, search_gap
from unlearnkit.memorization.pipeline import proxy_scores
from unlearnkit.methods import create_method, method_defaults
from unlearnkit.metrics import mean_ci95, measure_cost, paired_verdict, tow, tow_mia
from unlearnkit.models import select_trainable
from unlearnkit.recipe import TrainedModel, load_bundle, starting_model
from unlearnkit.runtime import apply_threads

BASELINES = ["finetune", "neggrad_plus", "salun"]
LEVELS = ["low", "mid", "high", "mixed"]
RANDOM = "random"  # not a memorization level: a random share of D (--random-fraction)
FAST_NTK_NOTE = (
    "Fast-NTK is not in this table: it linearises a pretrained model around its trained "
    "norm / prompt parameters, and this setting trains every parameter from scratch; it is "
    "compared in its own (norm / prompts) setting (docs/fast_ntk.md)."
)
DEFAULT_GAP_TARGET = 5.0


def forget_spec(level: str, size: int, scores: Path, random_fraction: float) -> str:
    """The forget spec of a level: N samples by memorization rank, or a random share of D."""
    if level == RANDOM:
        return f"random:{random_fraction}"
    return f"memorization:{level}:{size}:{scores}"


def variants(
    fz_file: Path | None, proxy_file: Path, proxy: str, baselines: list[str] = BASELINES
) -> dict[str, tuple[str, dict]]:
    """name -> (method, params): each baseline alone and inside RUM (same method per subset,
    each subset run a third of the method's default epochs, rounded up, so RUM[B] spends about
    what B alone does), and the paper's none/finetune/salun choice from configs/rum.yaml; RUM
    with FZ scores (when there are any: ``fz_file``) and with the best proxy."""
    out: dict[str, tuple[str, dict]] = {}
    sources = {"fz": f"file:{fz_file}"} if fz_file is not None else {}
    sources[proxy] = f"file:{proxy_file}"
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
    ap.add_argument(
        "--levels",
        default=",".join(LEVELS),
        help=f"comma-separated: {', '.join(LEVELS)} (memorization levels) or {RANDOM}",
    )
    ap.add_argument(
        "--random-fraction", type=float, default=0.1, help=f"share of D in the {RANDOM} set"
    )
    ap.add_argument(
        "--select",
        choices=["fz", "proxy"],
        default="fz",
        help="scores that rank D for the level forget sets (FZ of the scored set, or the "
        "seed's best proxy)",
    )
    ap.add_argument(
        "--full-set",
        action="store_true",
        help="run on the whole training set the scored subset came from (no FZ there: "
        "forget sets and RUM by the proxy)",
    )
    ap.add_argument(
        "--epoch-grid",
        default=None,
        help="with --full-set: train until the gap on the whole set (try these epoch counts in "
        "order, e.g. 16,24,32; complete runs) instead of the scored subset's count",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--baselines", default=",".join(BASELINES), help="baselines run alone and inside RUM"
    )
    args = ap.parse_args()
    levels = [lv for lv in args.levels.split(",") if lv]
    bad = [lv for lv in levels if lv not in [*LEVELS, "medium", RANDOM]]
    if bad or not levels or not 0 < args.random_fraction < 1:
        print(
            f"error: --levels takes {', '.join([*LEVELS, RANDOM])} and --random-fraction a "
            f"share in (0, 1) (got {args.levels!r}, {args.random_fraction})",
            file=sys.stderr,
        )
        sys.exit(2)
    grid = epoch_grid(args.epoch_grid)
    if grid and not args.full_set:
        print(
            "error: --epoch-grid needs --full-set (on the scored subset the FZ scores fix "
            "the recipe)",
            file=sys.stderr,
        )
        sys.exit(2)
    if not (args.mem / "results.json").is_file():
        print(
            f"error: {args.mem / 'results.json'} not found: run benchmarks/memorization.py "
            f"--out {args.mem} first",
            file=sys.stderr,
        )
        sys.exit(2)
    apply_threads(args.threads)
    baselines = [b for b in args.baselines.split(",") if b]
    mem = json.loads((args.mem / "results.json").read_text())
    proxy = mem["best_proxy"]["name"]
    scored = mem
    if args.full_set:
        mem = {**mem, "subset": None}
    cfg = recipe_of(mem).model_copy(update={"relearn_max_epochs": 10})
    bundle = load_bundle(cfg)
    if mem["label_noise"] > 0:
        bundle, _ = add_label_noise(bundle, mem["label_noise"], seed=0)
    primary = primary_set(mem)
    fz_file = None if args.full_set else args.mem / f"fz_{primary}.csv"
    select = "proxy" if args.full_set else args.select
    gap_target = (mem.get("gap") or {}).get("target", DEFAULT_GAP_TARGET)
    search = None
    first = None  # the search's last run is seed 0's original: not trained twice
    if grid:  # the whole set over-fits less than the subset: its own epoch count

        def train(chosen):
            tables, run = proxy_scores(chosen, bundle, [proxy], 0)
            return run.model, (tables, run)

        cfg, first, checks = search_gap(cfg, bundle, gap_target, grid, train)
        search = [c.as_dict() for c in checks]
        for c in checks:
            print(c.message(), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs, gaps, proxy_costs = [], [], []
    start = time.perf_counter()

    def save(complete: bool) -> dict:
        """results.json (and report.md) for the levels measured so far: a run stopped
        part-way keeps them, marked ``complete: false``."""
        done = [lv for lv in levels if any(r["level"] == lv for r in runs)]
        summary = summarise(runs, done)
        result = {
            "dataset": mem.get("dataset", "digits"),
            "subset": mem.get("subset"),
            "full_set": args.full_set,
            "label_noise": mem["label_noise"],
            "n_train": len(bundle.train),
            "recipe": {
                "model": cfg.model,
                "width": mem["width"],
                "peft": cfg.peft,
                "pretrain": cfg.pretrain,
                "epochs": cfg.train.epochs,
                "lr": cfg.train.lr,
                "batch_size": cfg.train.batch_size,
            },
            "gap": {
                "target": gap_target,
                "per_seed": gaps,
                "reached_every_seed": all(g["reached"] for g in gaps),
                "search": search,
            },
            "threads": args.threads,
            "scoring_cost": scoring_cost(scored, primary, proxy, proxy_costs, len(bundle.train)),
            "proxy": proxy,
            "selected_by": select,
            "forget_size": args.forget_size,
            "random_fraction": args.random_fraction,
            "seeds": len({r["seed"] for r in runs}),
            "baselines": baselines,
            "levels": done,
            "complete": complete,
            "rum_subset_epochs": "a third of the method's default epochs per subset (rounded up)",
            "excluded": {"fast_ntk": FAST_NTK_NOTE},
            "runs": runs,
            "summary": summary,
            "wall_s": time.perf_counter() - start,
            "targets": targets(runs, summary, baselines, proxy),
        }
        # atomic: a run stopped during a write keeps the previous forget sets' file whole
        atomic_write_text(args.out / "results.json", json.dumps(result, indent=2))
        atomic_write_text(args.out / "report.md", report(result))
        return result

    for seed in range(args.seeds):
        if seed == 0 and first is not None:
            tables, run = first
        else:
            tables, run = proxy_scores(cfg, bundle, [proxy], seed)  # trains the original once
        proxy_file = save_scores(tables[proxy], args.out / f"proxy_{proxy}_seed{seed}.csv")
        proxy_costs.append({"proxy_s": run.seconds[proxy], "train_s": run.train_seconds})
        gap = gap_check(run.model, bundle, gap_target, cfg.train.epochs)
        gaps.append({"seed": seed, **gap.as_dict()})
        print(f"seed {seed}: {gap.message()}", flush=True)
        initial = starting_model(cfg, bundle, seed)
        original = TrainedModel(
            run.model,
            copy.deepcopy(initial.state_dict()),
            select_trainable(initial, cfg.peft),
            seed,
        )
        table = variants(fz_file, proxy_file, proxy, baselines)
        ranking = fz_file if select == "fz" else proxy_file
        for level in levels:
            spec = forget_spec(level, args.forget_size, ranking, args.random_fraction)
            ids = select_forget(bundle.train, spec, seed)
            ctx0 = unlearning_context(cfg, bundle, original, ids, seed)
            threshold = seed_threshold(original.model, ctx0, cfg)
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
                        "n_forget": int(ids.numel()),
                        **evaluate(model, ctx, cfg, threshold),
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
            save(complete=False)
    result = save(complete=True)
    figure(result["summary"], args.out / "tow.png")
    print(json.dumps(result["targets"], indent=2))


def scoring_cost(
    scored: dict, primary: str, proxy: str, proxy_costs: list[dict], n_train: int
) -> dict:
    """Model-training seconds of each ranking, side by side: FZ's K subset models (measured
    on the scored set; scaled linearly by |D| and labelled when this run's D is larger) and the
    proxy's one training run (which is the original's own training: the proxy alone costs its
    own seconds on top)."""
    d = scored["datasets"][primary]
    scale = n_train / scored["n_train"]
    proxy_s = sum(c["proxy_s"] for c in proxy_costs) / len(proxy_costs)
    train_s = sum(c["train_s"] for c in proxy_costs) / len(proxy_costs)
    fz_s = d["fz_model_seconds"] * scale
    return {
        "fz_model_seconds": fz_s,
        "fz_extrapolated": scale != 1,
        "fz_measured_on": scored["n_train"],
        "proxy_seconds": proxy_s,
        "proxy_training_run_seconds": train_s,
        "proxy_cost_pct_of_fz": 100 * (proxy_s + train_s) / fz_s,
        "proxy_only_pct_of_fz": 100 * proxy_s / fz_s,
    }


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


def paired(runs: list[dict], level: str, a: str, b: str, key: str = "tow") -> dict:
    """Per-seed differences b - a on one level: mean, 95% CI and the verdict rule of
    ``metrics.intervals`` (a claim needs 6 seeds)."""
    by_seed = {
        r["seed"]: r[key] for r in runs if r["level"] == level and r["variant"] == a
    }  # fmt: skip
    diffs = [r[key] - by_seed[r["seed"]] for r in runs if r["level"] == level and r["variant"] == b]
    mean, ci = mean_ci95(diffs)
    return {"mean": mean, "ci95": list(ci) if ci else None, "verdict": paired_verdict(diffs)}


def targets(runs: list[dict], summary: dict, baselines: list[str], proxy: str) -> dict:
    """The seed paper's claims, per forget set: RUM's ToW against the best single method
    (the best RUM variant, and the best single method run inside RUM), and RUM with the proxy
    against RUM with FZ (same ToW, at a fraction of the cost)."""
    out: dict = {}
    for level, rows in summary.items():
        best_single = max(baselines, key=lambda b: rows[b]["tow"])
        rum = [k for k in rows if k.startswith("rum")]
        best_rum = max(rum, key=lambda k: rows[k]["tow"])
        same = f"rum[{best_single}]/{best_rum.rsplit('/', 1)[1]}"
        fz_pairs = {
            name[: -len("/fz")]: {
                "fz": rows[name]["tow"],
                "proxy": rows[name[: -len("fz")] + proxy]["tow"],
                "proxy_minus_fz": paired(runs, level, name, name[: -len("fz")] + proxy),
            }
            for name in rum
            if name.endswith("/fz")
        }
        out[level] = {
            "best_single": best_single,
            "best_single_tow": rows[best_single]["tow"],
            "best_single_tow_ci95": rows[best_single]["tow_ci95"],
            "best_rum": best_rum,
            "best_rum_tow": rows[best_rum]["tow"],
            "best_rum_tow_ci95": rows[best_rum]["tow_ci95"],
            "rum_beats_best_single": rows[best_rum]["tow"] >= rows[best_single]["tow"],
            "best_rum_minus_best_single": paired(runs, level, best_single, best_rum),
            "rum_of_best_single": same,
            "rum_of_best_single_minus_alone": paired(runs, level, best_single, same)
            if same in rows
            else None,
            "proxy_vs_fz_tow": fz_pairs,
        }
    return out


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


def fmt_ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "(one seed)"


def describe_level(level: str, r: dict) -> str:
    if level == RANDOM:
        return f"random {r.get('random_fraction', 0.1):.0%} of D"
    return f"{level} memorization ({r['forget_size']} samples, ranked by {r['selected_by']})"


def report(r: dict) -> str:
    name = r.get("dataset", "digits")
    data = (f"noisy {name}" if r.get("label_noise", 0.05) > 0 else name) + (
        f", a {r['subset']}-sample subset" if r.get("subset") else f" ({r['n_train']} samples)"
    )
    rec = r.get("recipe", {})
    lines = [f"# RUM on {data} (smallcnn)", ""]
    if rec:
        lines += [
            f"The original: {rec['model']} width {rec['width']}, "
            f"{'all parameters' if rec['peft'] == 'full' else rec['peft']} trained "
            f"{'after pretraining' if rec['pretrain'] else 'from scratch'} on D for "
            f"{rec['epochs']} epochs (lr {rec['lr']}, batch {rec['batch_size']}).",
            "",
        ]
    g = r.get("gap")
    if g:
        lines += [
            "Train-test gap of each seed's original: "
            + "; ".join(
                f"seed {x['seed']} {x['gap']:.1f} points (train {x['train_acc']:.1f}%, test "
                f"{x['test_acc']:.1f}%)"
                for x in g["per_seed"]
            )
            + f". Target {g['target']:g} points: "
            + (
                "reached on every seed."
                if g["reached_every_seed"]
                else "**NOT reached on every seed: the model barely memorizes in this setting, "
                "and RUM's premise does not hold.**"
            ),
            "",
        ]
        if g.get("search"):
            tried = ", ".join(f"{c['epochs']} epochs {c['gap']:.1f}" for c in g["search"])
            lines += [f"Epochs chosen on this set by training until the gap: {tried}.", ""]
    if not r.get("complete", True):
        lines += [
            "**Partial run** (`complete: false`): only the forget sets below were measured "
            "before it stopped.",
            "",
        ]
    lines += [
        f"Forget sets: {', '.join(describe_level(lv, r) for lv in r['levels'])}; "
        f"{r['seeds']} seeds; ToW and ToW-MIA against retraining with 95% CI (bootstrap over "
        f"seeds). RUM variants: `rum[B]` runs baseline B on each subset (low -> medium -> high) "
        f"ranked by FZ (`/fz`) or by the best proxy (`/{r['proxy']}`), each subset run with a "
        f"third of B's default epochs (rounded up) so RUM[B] costs about what B alone does; "
        f"`rum[paper]` = none / finetune (10 epochs, lr 0.1) / salun (5 epochs, lr 0.1) from "
        f"configs/rum.yaml. Methods otherwise at their defaults (finetune 10 epochs lr 0.02; "
        f"neggrad_plus 5 epochs lr 0.01 alpha 0.99; salun 5 epochs lr 0.01).",
        "",
    ]
    if r.get("excluded"):
        lines += [r["excluded"]["fast_ntk"], ""]
    for level in r["levels"]:
        lines += [
            f"## {describe_level(level, r)}",
            "",
            "| variant | ToW | 95% CI | ToW-MIA | 95% CI | forget % | test % | MIA % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for vname, e in r["summary"][level].items():
            lines.append(
                f"| {vname} | {e['tow']:.3f} | {fmt_ci(e['tow_ci95'])} | "
                f"{e['tow_mia']:.3f} | {fmt_ci(e['tow_mia_ci95'])} | "
                f"{e['acc_forget']:.1f} | {e['acc_test']:.1f} | {e['mia']:.1f} |"
            )
        lines.append("| fast_ntk | not run | | | | | | (own setting: norm / prompts) |")
        lines.append("")
    c = r.get("scoring_cost")
    if c:
        fz_note = (
            f" (**extrapolated** from {c['fz_measured_on']} samples, linear in the size of D)"
            if c.get("fz_extrapolated")
            else ""
        )
        lines += [
            "## Cost of the rankings (model-training seconds)",
            "",
            "| ranking | model-training s | % of FZ |",
            "|---|---|---|",
            f"| FZ (K subset models) | {c['fz_model_seconds']:.0f}{fz_note} | 100 |",
            f"| {r['proxy']}, incl. its training run | "
            f"{c['proxy_seconds'] + c['proxy_training_run_seconds']:.1f} | "
            f"{c['proxy_cost_pct_of_fz']:.2f} |",
            f"| {r['proxy']}, proxy only (the run is the original's own training) | "
            f"{c['proxy_seconds']:.2f} | {c['proxy_only_pct_of_fz']:.3f} |",
            "",
        ]
    t = r["targets"]
    if t:
        lines += [
            "## The seed paper's claims",
            "",
            "Differences are per seed, paired (mean, 95% CI); a verdict needs 6 seeds "
            f"(`metrics.intervals`), so with {r['seeds']} the table gives the direction, not a "
            "claim.",
            "",
            "| forget set | best single | ToW | best RUM | ToW | RUM - single | verdict | "
            "same method inside RUM - alone | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for level, x in t.items():
            d, s = x["best_rum_minus_best_single"], x["rum_of_best_single_minus_alone"]
            lines.append(
                f"| {level} | {x['best_single']} | {x['best_single_tow']:.3f} "
                f"{fmt_ci(x['best_single_tow_ci95'])} | {x['best_rum']} | "
                f"{x['best_rum_tow']:.3f} {fmt_ci(x['best_rum_tow_ci95'])} | "
                f"{d['mean']:+.3f} {fmt_ci(d['ci95'])} | {d['verdict']} | "
                + (
                    f"{x['rum_of_best_single']}: {s['mean']:+.3f} {fmt_ci(s['ci95'])} | "
                    f"{s['verdict']} |"
                    if s
                    else "- | - |"
                )
            )
        lines.append("")
        if any(x["proxy_vs_fz_tow"] for x in t.values()):
            lines += [
                f"RUM with the {r['proxy']} proxy vs with FZ (ToW; proxy - FZ per seed):",
                "",
                "| forget set | variant | FZ | proxy | proxy - FZ | verdict |",
                "|---|---|---|---|---|---|",
            ]
            for level, x in t.items():
                for k, v in x["proxy_vs_fz_tow"].items():
                    p = v["proxy_minus_fz"]
                    lines.append(
                        f"| {level} | {k} | {v['fz']:.3f} | {v['proxy']:.3f} | "
                        f"{p['mean']:+.3f} {fmt_ci(p['ci95'])} | {p['verdict']} |"
                    )
            lines.append("")
    lines += [
        f"Wall time of the whole benchmark: {r['wall_s'] / 60:.1f} min.",
        "",
        "Figure: `tow.png`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
