"""Every registered method on digits, random-10% and class forgetting, 3 seeds, ToW with CI.

Writes results/baselines/<setting>/ (results.json, report.md, figures) and
results/baselines/report.md with both tables. Usage: python benchmarks/baselines.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from unlearnkit.config import build_config
from unlearnkit.experiment import run_experiment
from unlearnkit.methods import default_method_names
from unlearnkit.report import summary_table, write_run

SETTINGS = {"random10": "random:0.1", "class3": "class:3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--peft", default="bn")
    parser.add_argument("--out", type=Path, default=Path("results/baselines"))
    args = parser.parse_args()
    sections = []
    for name, spec in SETTINGS.items():
        cfg = build_config(
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
            f"## forget `{spec}` ({args.seeds} seeds, {args.model} + {args.peft}, "
            f"{time.perf_counter() - start:.0f} s)\n\n{summary_table(results)}\n"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text("# Baselines on digits\n\n" + "\n".join(sections))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
