"""Every default method on random-10% and class forgetting, 3 seeds, ToW with CI, and which
methods beat fine-tuning (paired per seed: the bootstrap interval of ToW(method) - ToW(finetune)
above 0, with at least metrics.intervals.MIN_SEEDS_FOR_CLAIM seeds; fewer seeds claim nothing).

Writes OUT/<setting>/ (results.json with per-stage wall time and peak memory, report.md,
figures) and OUT/report.md with both tables.

    python benchmarks/baselines.py                                    # digits -> results/baselines
    python benchmarks/baselines.py --dataset fashion_mnist --out results/fashion_mnist/baselines
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from unlearnkit.config import build_config
from unlearnkit.experiment import judged, run_experiment, stage_record
from unlearnkit.methods import default_method_names
from unlearnkit.metrics import mean_ci95, measure_cost, paired_verdict, peak_rss_mb
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.report import stages_table, summary_table, write_run
from unlearnkit.runtime import apply_threads

SETTINGS = {"random10": "random:0.1", "class3": "class:3"}


def versus_finetune(results: dict[str, Any]) -> str:
    """Per method, ToW(method) - ToW(finetune) on the same seeds: mean, 95% CI, verdict."""
    tows: dict[str, dict[int, float]] = {}
    for row in results["runs"]:
        tows.setdefault(row["method"], {})[row["seed"]] = row["tow"]
    base = tows["finetune"]
    n = len(base)
    lines = [f"| method | ToW - ToW(finetune) [95% CI, n={n}] | verdict |", "|---|---|---|"]
    for method, by_seed in tows.items():
        if method in ("finetune", "retrain", "original"):
            continue
        mean, ci = mean_ci95([by_seed[s] - base[s] for s in sorted(base)])
        verdict = paired_verdict([by_seed[s] - base[s] for s in sorted(base)])
        shown = f"{mean:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
        lines.append(f"| {method} | {shown} | {verdict} |")
    return "\n".join(lines)


def seed_config(args: argparse.Namespace, spec: str, seed: int, state_dir: Path) -> Any:
    """One setting on one seed. fast_ntk keeps its NTK state of D per seed: D and the original
    are the same in every setting, so the second setting pays only for D_f's downdate."""
    overrides: dict[str, Any] = {
        "method_params": {"fast_ntk": {"state_path": str(state_dir / f"seed{seed}.safetensors")}}
    }
    if args.subset is not None:
        overrides["dataset_options"] = {"subset": args.subset}
    return build_config(
        overrides,
        dataset=args.dataset,
        data_dir=args.data_dir,
        forget=spec,
        seeds=[seed],
        model=args.model,
        peft=args.peft,
        methods=default_method_names(),  # the full-model ntk: benchmarks/fast_ntk.py
    )


def merged(parts: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """The per-seed documents of one setting as one: all runs, all stages, one summary."""
    runs = [row for part in parts for row in part["runs"]]
    return judged(
        {
            **parts[0],
            "seeds": [s for part in parts for s in part["seeds"]],
            "stages": [stage for part in parts for stage in part["stages"]],
            "wall_s": wall_s,
            "peak_rss_mb": max(part["peak_rss_mb"] for part in parts),
            "runs": runs,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--peft", default="bn")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=None, help="class-stratified sample of D")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="random10,class3")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/baselines"))
    args = parser.parse_args()
    threads = apply_threads(args.threads)
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    seeds = list(range(args.seeds))
    say = lambda m: print(m, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="ntk-states-") as tmp:
        first = seed_config(args, SETTINGS[names[0]], seeds[0], Path(tmp))
        bundle = load_bundle(first)
        originals, shared = {}, []
        for seed in seeds:  # the original of a seed is the same in every setting: train it once
            say(f"seed {seed}: training the original model on D ({len(bundle.train)} samples)")
            with measure_cost() as cost:
                originals[seed] = train_original(first, bundle, seed)
            shared.append(stage_record(f"seed {seed}: pretrain + train the original", cost))
        trained = {"stages": shared, "wall_s": sum(st["time_s"] for st in shared)}
        trained["peak_rss_mb"] = peak_rss_mb()
        sections = [f"Originals (shared by every setting):\n\n{stages_table(trained)}\n"]
        for name in names:
            spec = SETTINGS[name]
            start = time.perf_counter()
            parts = [
                run_experiment(
                    seed_config(args, spec, seed, Path(tmp)), say, bundle, originals=originals
                )
                for seed in seeds
            ]
            results = merged(parts, time.perf_counter() - start)
            results["original_stages"] = shared
            write_run(results, args.out / name)
            sections.append(
                f"## forget `{spec}` ({args.seeds} seeds, {args.model} + {args.peft}, {threads} "
                f"threads, {results['wall_s']:.0f} s after the originals)\n\n"
                f"{summary_table(results)}\n\n"
                f"Against fine-tuning (paired by seed):\n\n{versus_finetune(results)}\n\n"
                f"Stages:\n\n{stages_table(results)}\n"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    title = f"# Baselines on {args.dataset}" + (f" ({args.subset} samples)" if args.subset else "")
    note = (
        "fast_ntk's NTK state of D is computed in the first setting and reused by the next "
        "(same D, same original), so its time there is the D_f downdate only."
    )
    (args.out / "report.md").write_text(title + "\n\n" + note + "\n\n" + "\n".join(sections))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
