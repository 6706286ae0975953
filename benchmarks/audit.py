"""The per-example audit on digits: U-LiRA and the NeurIPS 2023 challenge score of every default
method (fast_ntk and rum among them) and of the S3T ensemble (deleted vs S3T trained without the
forget set) on random-10% and class forgetting, smallcnn + bn.

K (shadow pairs) and N (challenge models) start at --start and double, reusing every model
trained so far (the cache), until each method's AUC and F intervals are narrower than
--ci-width or K reaches --max-k. Writes results/audit/<setting>/ (results.json, report.md,
llr_hist.png, llr.csv, epsilon.csv) and results/audit/report.md with both tables, the K and N
reached and the wall time.

    python benchmarks/audit.py --start 16 --max-k 16 --executor processes --workers 2
        # the measured run in results/audit/ (about 30 min on 2 cores for both settings)
    python benchmarks/audit.py      # doubling K to the 0.05 intervals (hours on 2 cores)
    python benchmarks/audit.py --start 3 --max-k 3 --epochs 2 --subset 300 --methods finetune
                                                                 # a smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from unlearnkit.audit import audit_config, run_audit, write_audit
from unlearnkit.audit.output import control_lines, summary_table
from unlearnkit.config import build_config
from unlearnkit.methods import default_method_names
from unlearnkit.recipe import load_bundle
from unlearnkit.runtime import apply_threads, create_executor

SETTINGS = {"random10": "random:0.1", "class3": "class:3"}


def widest(results: dict[str, Any]) -> float:
    """The widest AUC or F interval over the methods (inf where one is missing)."""
    width = 0.0
    for s in results["summary"].values():
        for key in ("auc_ci95", "forgetting_quality_ci95"):
            ci = s[key]
            width = max(width, float("inf") if ci is None else ci[1] - ci[0])
    return width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--peft", default="bn")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all default)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="random10,class3")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="an extra setting: a name and its forget spec (indices:ids.json); repeatable",
    )
    parser.add_argument("--start", type=int, default=16, help="first K = N")
    parser.add_argument("--max-k", type=int, default=256)
    parser.add_argument("--ci-width", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs on D")
    parser.add_argument("--subset", type=int, default=None, help="digits training samples")
    parser.add_argument("--executor", default="local", choices=["local", "processes", "ray"])
    parser.add_argument("--workers", type=int, default=None, help="processes: worker count")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--ensembles", default="s3t", help="exact ensembles audited too ('' none)")
    parser.add_argument(
        "--ensemble-policies",
        default="eager",
        help="deletion policies each ensemble is audited under: eager and/or manual "
        "(deactivation only; needs a forget set that leaves a shard alive)",
    )
    parser.add_argument(
        "--ensemble-shape",
        default="num_shards=4,num_slices=3,num_sequences=3,lora_rank=4",
        help="KEY=VALUE,... options of the ensembles",
    )
    parser.add_argument("--out", type=Path, default=Path("results/audit"))
    args = parser.parse_args()
    apply_threads(args.threads)
    settings_by_name = dict(SETTINGS)
    settings_by_name.update(item.split("=", 1) for item in args.setting)
    policies = [p for p in args.ensemble_policies.split(",") if p]
    ensembles = [e for e in args.ensembles.split(",") if e]
    shape = {
        key: int(value)
        for key, _, value in (item.partition("=") for item in args.ensemble_shape.split(","))
        if key
    }
    methods = args.methods.split(",") if args.methods else default_method_names(args.peft)
    sections = []
    options = {"workers": args.workers} if args.executor == "processes" and args.workers else {}
    with create_executor(args.executor, **options) as executor:
        names = [n for n in args.settings.split(",") if n]
        for name in names + [item.split("=", 1)[0] for item in args.setting]:
            overrides: dict[str, Any] = {}
            if args.epochs is not None:
                overrides["train"] = {"epochs": args.epochs}
            if args.subset is not None:
                overrides["dataset_options"] = {"subset": args.subset}
            cfg = build_config(
                overrides,
                forget=settings_by_name[name],
                model=args.model,
                peft=args.peft,
                methods=methods,
            )
            bundle = load_bundle(cfg)
            start = time.perf_counter()
            k = args.start
            while True:
                settings = audit_config(
                    k=k,
                    n=k,
                    n_boot=args.n_boot,
                    ensembles=ensembles,
                    ensemble_options=shape,
                    ensemble_policies=policies,
                )
                print(f"{name}: K = N = {k}", flush=True)
                run = run_audit(
                    cfg,
                    settings,
                    args.out / "cache",
                    executor,
                    lambda d, t: print(f"  models {d}/{t}", flush=True),
                    bundle=bundle,
                )
                width = widest(run.results)
                if width <= args.ci_width or k * 2 > args.max_k:
                    break
                k *= 2
            wall = time.perf_counter() - start
            write_audit(run, args.out / name)
            met = "met" if width <= args.ci_width else "NOT met (raise --max-k)"
            cost = run.results["cost"]
            sections.append(
                f"## forget `{settings_by_name[name]}` ({args.model} + {args.peft}, "
                f"K = N = {k})\n\n{summary_table(run.results)}\n\n"
                f"{control_lines(run.results)}\n\nwidest AUC / F interval {width:.3f} "
                f"(target {args.ci_width}: {met}); {cost['models']} models, "
                f"{cost['model_seconds']:.0f} s of model time, {wall:.0f} s wall for this "
                f"setting ({args.executor} executor)\n"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text("# Per-example audit on digits\n\n" + "\n".join(sections))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
