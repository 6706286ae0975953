"""Tune one method's hyper-parameters against the retrain reference: a grid, one seed, ToW.

Papers compare unlearning methods each at their best hyper-parameters for the setting; the
digits defaults do not carry over to a harder, larger data set (on Fashion-MNIST, SCRUB and
NegGrad at their digits learning rates collapse the model). This trains the original and the
retrain reference once per setting, then runs every grid point on a private copy of the
original and ranks the points by ToW (ties broken by ToW-MIA).

    python benchmarks/tune.py --dataset fashion_mnist --method scrub \\
        --grid lr=0.0005,0.002,0.005 --grid max_steps=1 --out results/fashion_mnist/tune/scrub

Writes OUT/results.json (every row, the thread count and load) and OUT/report.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unlearnkit.config import build_config
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import run_method, score_against, unlearning_context
from unlearnkit.methods import create_method
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.runtime import apply_threads, thread_report

SETTINGS = {"random10": "random:0.1", "class3": "class:3"}


def parse_grid(items: list[str]) -> list[dict[str, Any]]:
    """``["lr=0.01,0.1", "epochs=1"]`` -> every combination as a parameter dict (YAML values)."""
    axes: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise SystemExit(f"--grid {item!r}: expected NAME=V1,V2,...")
        axes[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def point_label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def report(rows: list[dict[str, Any]], method: str, head: str) -> str:
    lines = [
        head,
        "",
        "| setting | params | retain % | forget % | test % | MIA eff. % | ToW | ToW-MIA | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        acc = row["acc"]
        name = row["params_label"] if row["method"] == method else f"({row['method']})"
        lines.append(
            f"| {row['setting']} | {name} | {acc['retain']:.1f} | {acc['forget']:.1f} | "
            f"{acc['test']:.1f} | {row['mia_efficacy']:.1f} | {row['tow']:.3f} | "
            f"{row['tow_mia']:.3f} | {row['time_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--grid", action="append", default=[], help="NAME=V1,V2 (repeatable)")
    parser.add_argument("--base", default="{}", help="YAML/JSON params every point shares")
    parser.add_argument("--settings", default="random10,class3")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    base = yaml.safe_load(args.base) or {}
    grid = [{**base, **p} for p in parse_grid(args.grid)]
    threads = apply_threads(args.threads)
    machine = thread_report()
    overrides = {"dataset_options": {"subset": args.subset}} if args.subset else {}
    try:
        cfg = build_config(
            overrides,
            dataset=args.dataset,
            data_dir=args.data_dir,
            seeds=[args.seed],
            methods=["retrain", args.method],
        )
    except (UnlearnkitError, ValidationError) as exc:
        parser.error(str(exc))
    preset = cfg.method_params.get(args.method, {})  # the data set's preset, under the grid
    for point in grid:  # a bad name or value fails now, not after training the original
        try:
            create_method(args.method, **{**preset, **point})
        except UnlearnkitError as exc:
            parser.error(f"{point_label(point)}: {exc}")
    start = time.perf_counter()
    bundle = load_bundle(cfg)
    print(f"training the original (seed {args.seed}, {len(bundle.train)} samples)", flush=True)
    original = train_original(cfg, bundle, args.seed)
    rows: list[dict[str, Any]] = []
    for name in names:
        setting = cfg.model_copy(update={"forget": SETTINGS[name]})
        forget_ids = select_forget(bundle.train, setting.forget, args.seed)
        ctx = unlearning_context(setting, bundle, original, forget_ids, args.seed)
        reference, _ = run_method(
            setting, "retrain", setting.method_params.get("retrain", {}), ctx, original
        )
        rows.append({**score_against(reference, reference), "setting": name})
        for point in grid:
            print(f"{name}: {args.method} {point_label(point)}", flush=True)
            params = {**preset, **point}
            row, _ = run_method(setting, args.method, params, ctx, original)
            rows.append(
                {
                    **score_against(row, reference),
                    "setting": name,
                    "params": params,
                    "params_label": point_label(point),
                }
            )
    rows.sort(key=lambda r: (r["setting"], r["method"] != "retrain", -r["tow"], -r["tow_mia"]))
    wall = time.perf_counter() - start
    head = (
        f"# Tuning {args.method} on {args.dataset}"
        + (f" ({args.subset} samples)" if args.subset else "")
        + f"\n\nSeed {args.seed}, {threads} threads, load at start "
        f"{machine['load_average_1_5_15'][0]:.2f}, {wall:.0f} s. Best ToW first per setting; "
        "ToW and ToW-MIA against the retrain row of the same setting. Parameters not in "
        f"the grid: {point_label(preset)} (the data set's preset) and the method's defaults."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "method": args.method,
        "dataset": args.dataset,
        "subset": args.subset,
        "seed": args.seed,
        "machine": machine,
        "wall_s": wall,
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "report.md").write_text(report(rows, args.method, head) + "\n")
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
