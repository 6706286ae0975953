"""The organisers' F (and final score) of a finished fixed-spec audit, from its own arrays.

For a fixed forget spec (``class:3``) the challenge models are the U-LiRA pairs, so
``llr.npz`` holds every challenge model's phi on every forget example and the organisers' F can
be computed for an audit run before it existed, without training anything. Checks that our F
recomputed from the same arrays equals the run's own ``forgetting_quality`` (so the arrays are
the challenge's), then writes RUN/official.json and prints a table.

    python benchmarks/audit_rescore.py results/audit/class3
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from unlearnkit.metrics.audit_stats import (
    challenge_score,
    forgetting_quality,
    official_forgetting_quality,
)


def challenge_rows(arrays, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, examples) phi of the unlearned and the retrained challenge models of ``method``."""
    pair, example = arrays[f"{method}/pair"], arrays[f"{method}/example_id"]
    ids = arrays[f"{method}/challenge_example_id"]
    column = {int(i): j for j, i in enumerate(ids)}
    cols = [column[int(i)] for i in example]
    u = np.full((int(pair.max()) + 1, ids.size), np.nan)
    r = u.copy()
    u[pair, cols] = arrays[f"{method}/phi_unlearned"]
    r[pair, cols] = arrays[f"{method}/phi_retrained"]
    if np.isnan(u).any() or np.isnan(r).any():
        raise SystemExit(f"{method}: not every pair saw every forget example (a random spec?)")
    return u, r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    results = json.loads((args.run / "results.json").read_text())
    if not results["protocol"]["forget_is_fixed"]:
        raise SystemExit("a random spec's challenge models are not in llr.npz: re-run the audit")
    out = {}
    with np.load(args.run / "llr.npz") as arrays:
        for method, s in results["summary"].items():
            u, r = challenge_rows(arrays, method)
            ours = forgetting_quality(u, r, delta=results["audit"]["delta"])[0]
            if not math.isclose(ours, s["forgetting_quality"], abs_tol=1e-12):
                raise SystemExit(f"{method}: our F {ours} != the run's {s['forgetting_quality']}")
            official = official_forgetting_quality(u, r, delta=results["audit"]["delta"])[0]
            ratios = [s[k] for k in ("retain_acc_unlearned", "retain_acc_retrained")]
            ratios += [s[k] for k in ("test_acc_unlearned", "test_acc_retrained")]
            out[method] = {
                "n": int(u.shape[0]),
                "forgetting_quality": ours,
                "forgetting_quality_official": official,
                "score": s["score"],
                "final_score_official": challenge_score(official, *ratios),
            }
    (args.run / "official.json").write_text(json.dumps(out, indent=2))
    print("| method | N | F ours | F official | score ours | score official |")
    print("|---|---|---|---|---|---|")
    for method, o in out.items():
        print(
            f"| {method} | {o['n']} | {o['forgetting_quality']:.3f} | "
            f"{o['forgetting_quality_official']:.3f} | {o['score']:.3f} | "
            f"{o['final_score_official']:.3f} |"
        )


if __name__ == "__main__":
    main()
