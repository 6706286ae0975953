"""Which BatchNorm policy should unlearning use? Every default method under each policy
(frozen / updated / recompute, src/unlearnkit/methods/batchnorm.py) on class and random
forgetting, 3 seeds, ToW against retrain.

The original of a seed is trained once and shared by every policy and setting (the policy only
changes what the methods do with it), and fast_ntk's NTK state of D once per seed.

    python benchmarks/bn_mode.py --threads 1                  # -> results/digits/bn_mode
    python benchmarks/bn_mode.py --report-only      # re-summarise the files, rebuild the reports
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from unlearnkit.config import build_config
from unlearnkit.experiment import judged, run_experiment
from unlearnkit.methods import default_method_names
from unlearnkit.methods.batchnorm import BN_MODES
from unlearnkit.metrics import mean_ci95
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.report import write_run
from unlearnkit.runtime import apply_threads

SETTINGS = {"class3": "class:3", "random10": "random:0.1"}


def config(args: argparse.Namespace, mode: str, spec: str, state_dir: Path) -> Any:
    return build_config(
        {"method_params": {"fast_ntk": {"state_path": str(state_dir / "seed{seed}.st")}}},
        dataset=args.dataset,
        forget=spec,
        seeds=list(range(args.seeds)),
        bn_mode=mode,
        methods=default_method_names(),
    )


def comparison(out: Path, modes: list[str], settings: list[str]) -> str:
    """Per setting and method: ToW mean [CI] under each policy, from the results files."""
    parts = []
    for name in settings:
        docs = {m: json.loads((out / m / name / "results.json").read_text()) for m in modes}
        first = docs[modes[0]]
        head = "| method | " + " | ".join(f"ToW `{m}`" for m in modes) + " |"
        lines = [head, "|---" * (len(modes) + 1) + "|"]
        for method in first["summary"]:
            cells = []
            for m in modes:
                values = [r["tow"] for r in docs[m]["runs"] if r["method"] == method]
                mean, ci = mean_ci95(values)
                cells.append(f"{mean:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        avg = []
        for m in modes:
            tows = [r["tow"] for r in docs[m]["runs"] if r["method"] not in ("retrain", "original")]
            avg.append(f"{sum(tows) / len(tows):.3f}")
        lines.append("| **mean of the methods** | " + " | ".join(avg) + " |")
        seeds = first["seeds"]
        parts.append(f"## forget `{first['forget']}` ({len(seeds)} seeds {seeds})\n")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--modes", default=",".join(BN_MODES))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/digits/bn_mode"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    modes, settings = args.modes.split(","), args.settings.split(",")
    if args.report_only:  # re-judge the files with the current summary code, same runs
        for mode in modes:
            for name in settings:
                path = args.out / mode / name
                write_run(judged(json.loads((path / "results.json").read_text())), path)
    else:
        apply_threads(args.threads)
        with tempfile.TemporaryDirectory(prefix="ntk-states-") as tmp:
            first = config(args, modes[0], SETTINGS[settings[0]], Path(tmp))
            bundle = load_bundle(first)
            originals = {s: train_original(first, bundle, s) for s in first.seeds}
            for mode in modes:
                for name in settings:
                    start = time.perf_counter()
                    per_seed = []
                    for seed in first.seeds:
                        cfg = config(args, mode, SETTINGS[name], Path(tmp))
                        state = str(Path(tmp) / f"seed{seed}.st")
                        cfg.method_params["fast_ntk"]["state_path"] = state
                        cfg = cfg.model_copy(update={"seeds": [seed]})
                        per_seed.append(run_experiment(cfg, print, bundle, originals=originals))
                    runs = [row for doc in per_seed for row in doc["runs"]]
                    results = judged(
                        {
                            **per_seed[0],
                            "seeds": first.seeds,
                            "stages": [st for doc in per_seed for st in doc["stages"]],
                            "wall_s": time.perf_counter() - start,
                            "runs": runs,
                        }
                    )
                    write_run(results, args.out / mode / name)
                    print(f"wrote {args.out / mode / name}", flush=True)
    report = (
        f"# BatchNorm policy during unlearning, {args.dataset}\n\n"
        "ToW against retrain (1 = indistinguishable), mean and bootstrap-percentile 95% interval "
        "over the seeds; produced by benchmarks/bn_mode.py.\n\n"
        + comparison(args.out, modes, settings)
    )
    (args.out / "report.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
