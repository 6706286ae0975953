"""A finished audit re-read from its own arrays (llr.npz), without training anything.

1. Every registered U-LiRA interval (``unlearnkit.audit.rescore``): per method the AUC and
   TPR@FPR intervals, the permutation null's range and p-value, the verdict and the control
   check per interval, and the CPU seconds each took. The run's own interval is recomputed
   first and must equal its results.json. Any run (fixed or random forget spec) ->
   RUN/intervals.json.
2. For a fixed forget spec (``class:3``) the challenge models are the U-LiRA pairs, so the
   organisers' F (and final score) can be computed too; our F recomputed from the same arrays
   must equal the run's -> RUN/official.json. A random spec's challenge models are not saved.

    python benchmarks/audit_rescore.py results/audit/class3 results/audit/random10_previous
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.audit.rescore import rescore_run
from unlearnkit.audit.ulira import phi_from_arrays
from unlearnkit.errors import UnlearnkitError
from unlearnkit.metrics.audit_stats import (
    challenge_score,
    forgetting_quality,
    official_forgetting_quality,
)


def official(run: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Our F (checked against the run's) and the organisers' F and final score per method."""
    out = {}
    delta, k, n = (results["audit"][key] for key in ("delta", "k", "n"))
    if n > k:
        raise SystemExit(f"N = {n} > K = {k}: challenge models beyond the pairs are not saved")
    with np.load(run / "llr.npz") as arrays:
        for method, s in results["summary"].items():
            ids = arrays[f"{method}/challenge_example_id"]
            u, r = phi_from_arrays(arrays, method, k, columns=ids)
            u, r = u[:n], r[:n]  # challenge model i is pair i (same forget set and seed)
            if np.isnan(u).any() or np.isnan(r).any():
                raise SystemExit(f"{method}: not every pair saw every forget example")
            ours = forgetting_quality(u, r, delta=delta)[0]
            if not math.isclose(ours, s["forgetting_quality"], abs_tol=1e-12):
                raise SystemExit(f"{method}: our F {ours} != the run's {s['forgetting_quality']}")
            f_official = official_forgetting_quality(u, r, delta=delta)[0]
            ratios = [s[k] for k in ("retain_acc_unlearned", "retain_acc_retrained")]
            ratios += [s[k] for k in ("test_acc_unlearned", "test_acc_retrained")]
            out[method] = {
                "n": int(u.shape[0]),
                "forgetting_quality": ours,
                "forgetting_quality_official": f_official,
                "score": s["score"],
                "final_score_official": challenge_score(f_official, *ratios),
            }
    return out


def _span(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def print_intervals(scored: dict[str, Any]) -> None:
    names = scored["intervals"]
    print(
        f"{scored['run']}: K = {scored['pairs']}, own interval {scored['run_interval']} "
        "reproduced from llr.npz"
    )
    print(
        "| method | AUC | "
        + " | ".join(f"AUC {n}" for n in names)
        + " | permutation null / p | told apart | TPR@1% [perm] | perm CPU s |"
    )
    print("|---" * (len(names) + 6) + "|")
    for method, m in scored["methods"].items():
        perm = m["intervals"]["permutation"]
        cells = [_span(m["intervals"][n]["auc_ci95"]) for n in names]
        print(
            f"| {method} | {m['auc']:.3f} | "
            + " | ".join(cells)
            + f" | {_span(perm['auc_null95'])} / {perm['auc_p_value']:.4f} | "
            f"{'yes' if perm['distinguishable'] else 'no'} | {m['tpr_at_1pct_fpr']:.3f} "
            f"{_span(perm['tpr_at_1pct_fpr_ci95'])} | {perm['cpu_seconds']:.2f} |"
        )
    for name, c in scored["control"].items():
        verdict = "passes" if c["covers_chance"] else f"FAILS: {c['warning']}"
        print(f"control ({c['method']}) under {name}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    for run in args.runs:
        try:
            scored = rescore_run(run)
        except UnlearnkitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        results = json.loads((run / "results.json").read_text())
        (run / "intervals.json").write_text(json.dumps(scored, indent=2))
        print_intervals(scored)
        if results["protocol"]["forget_is_fixed"]:
            rows = official(run, results)
            (run / "official.json").write_text(json.dumps(rows, indent=2))
            print("| method | N | F ours | F official | score ours | score official |")
            print("|---|---|---|---|---|---|")
            for method, o in rows.items():
                print(
                    f"| {method} | {o['n']} | {o['forgetting_quality']:.3f} | "
                    f"{o['forgetting_quality_official']:.3f} | {o['score']:.3f} | "
                    f"{o['final_score_official']:.3f} |"
                )
        print()


if __name__ == "__main__":
    main()
