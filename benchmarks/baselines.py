"""Every default method on random-10% and class forgetting, 3 seeds, ToW with CI, and which
methods beat fine-tuning (paired per seed: the CI of ToW(method) - ToW(finetune) above 0).

Writes OUT/<setting>/ (results.json with per-stage wall time and peak memory, report.md,
figures) and OUT/report.md with both tables.

    python benchmarks/baselines.py                                    # digits -> results/baselines
    python benchmarks/baselines.py --dataset fashion_mnist --out results/fashion_mnist/baselines
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from unlearnkit.config import build_config
from unlearnkit.experiment import run_experiment
from unlearnkit.methods import default_method_names
from unlearnkit.metrics import mean_ci95
from unlearnkit.report import stages_table, summary_table, write_run
from unlearnkit.runtime import apply_threads

SETTINGS = {"random10": "random:0.1", "class3": "class:3"}


def versus_finetune(results: dict[str, Any]) -> str:
    """Per method, ToW(method) - ToW(finetune) on the same seeds: mean, 95% CI, verdict."""
    tows: dict[str, dict[int, float]] = {}
    for row in results["runs"]:
        tows.setdefault(row["method"], {})[row["seed"]] = row["tow"]
    base = tows["finetune"]
    lines = ["| method | ToW - ToW(finetune) [95% CI] | verdict |", "|---|---|---|"]
    for method, by_seed in tows.items():
        if method in ("finetune", "retrain", "original"):
            continue
        mean, ci = mean_ci95([by_seed[s] - base[s] for s in sorted(base)])
        if ci is None:
            verdict, shown = "one seed: no CI", f"{mean:+.3f}"
        else:
            verdict = "beats" if ci[0] > 0 else ("worse" if ci[1] < 0 else "no difference shown")
            shown = f"{mean:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"
        lines.append(f"| {method} | {shown} | {verdict} |")
    return "\n".join(lines)


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
    sections = []
    for name in args.settings.split(","):
        spec = SETTINGS[name]
        overrides: dict[str, Any] = {}
        if args.subset is not None:
            overrides["dataset_options"] = {"subset": args.subset}
        cfg = build_config(
            overrides,
            dataset=args.dataset,
            data_dir=args.data_dir,
            forget=spec,
            seeds=list(range(args.seeds)),
            model=args.model,
            peft=args.peft,
            methods=default_method_names(),  # the full-model ntk: benchmarks/fast_ntk.py
        )
        start = time.perf_counter()
        results = run_experiment(cfg, progress=lambda m: print(m, flush=True))
        write_run(results, args.out / name)
        sections.append(
            f"## forget `{spec}` ({args.seeds} seeds, {args.model} + {args.peft}, {threads} "
            f"threads, {time.perf_counter() - start:.0f} s)\n\n{summary_table(results)}\n\n"
            f"Against fine-tuning (paired by seed):\n\n{versus_finetune(results)}\n\n"
            f"Stages:\n\n{stages_table(results)}\n"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    title = f"# Baselines on {args.dataset}" + (f" ({args.subset} samples)" if args.subset else "")
    (args.out / "report.md").write_text(title + "\n\n" + "\n".join(sections))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
