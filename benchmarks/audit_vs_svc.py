"""Does the per-example audit rank methods as the population SVC attack does?

Reads the audit (``results/audit/<setting>/results.json``, from benchmarks/audit.py) and the
baselines (``results/baselines/<setting>/results.json``, from benchmarks/baselines.py: the same
recipe, 3 seeds) and writes ``results/audit/vs_svc.md`` / ``.json``: per method the SVC MIA
efficacy and its gap to retrain's, the U-LiRA AUC and its distance from 0.5, the challenge F,
both rankings and their Spearman correlation, and the methods the SVC attack calls forgotten
(MIA efficacy within --svc-tolerance points of retrain's) whose audit AUC interval excludes 0.5.

    python benchmarks/audit_vs_svc.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scipy.stats import rankdata, spearmanr

RECIPE_KEYS = ("dataset", "model", "peft", "pretrain_config", "train", "public_fraction")


def compare(audit: dict[str, Any], base: dict[str, Any], tolerance: float) -> dict[str, Any]:
    recipe_a = {k: audit["config"].get(k) for k in RECIPE_KEYS}
    recipe_b = {k: base["config"].get(k) for k in RECIPE_KEYS}
    for recipe in (recipe_a, recipe_b):
        for section in ("pretrain_config", "train"):
            recipe[section] = {k: v for k, v in (recipe[section] or {}).items() if k != "seed"}
    svc = {m: s["mia_efficacy_mean"] for m, s in base["summary"].items()}
    methods = [m for m in audit["summary"] if m in svc and m != "retrain"]
    rows = []
    for m in methods:
        a = audit["summary"][m]
        lo, hi = a["auc_ci95"] or (None, None)
        rows.append(
            {
                "method": m,
                "svc_mia": svc[m],
                "svc_gap": abs(svc[m] - svc["retrain"]),
                "auc": a["auc"],
                "auc_ci95": a["auc_ci95"],
                "auc_gap": abs(a["auc"] - 0.5),
                "F": a["forgetting_quality"],
                "separated": lo is not None and (lo > 0.5 or hi < 0.5),
            }
        )
    svc_rank = rankdata([r["svc_gap"] for r in rows])
    auc_rank = rankdata([r["auc_gap"] for r in rows])
    for r, s, a in zip(rows, svc_rank, auc_rank, strict=True):
        r["svc_rank"], r["audit_rank"] = float(s), float(a)
    rho = spearmanr(svc_rank, auc_rank).statistic if len(rows) > 2 else None
    return {
        "same_recipe": recipe_a == recipe_b,
        "retrain_svc_mia": svc["retrain"],
        "retrain_auc": audit["summary"]["retrain"]["auc"],
        "retrain_auc_ci95": audit["summary"]["retrain"]["auc_ci95"],
        "spearman": None if rho is None else float(rho),
        "svc_says_forgotten_audit_separates": [
            r["method"] for r in rows if r["svc_gap"] <= tolerance and r["separated"]
        ],
        "rows": sorted(rows, key=lambda r: r["svc_rank"]),
    }


def render(name: str, forget: str, c: dict[str, Any], tolerance: float) -> str:
    lines = [
        f"## forget `{forget}` ({name})",
        "",
        f"retrain: SVC MIA efficacy {c['retrain_svc_mia']:.1f}%, audit AUC "
        f"{c['retrain_auc']:.3f} [{c['retrain_auc_ci95'][0]:.3f}, {c['retrain_auc_ci95'][1]:.3f}]"
        + ("" if c["same_recipe"] else " (**the two runs used different recipes**)"),
        "",
        "| method | SVC MIA eff. % | gap to retrain | SVC rank | U-LiRA AUC [95% CI] | "
        "AUC - 0.5 | audit rank | F |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in c["rows"]:
        ci = r["auc_ci95"]
        lines.append(
            f"| {r['method']} | {r['svc_mia']:.1f} | {r['svc_gap']:.1f} | {r['svc_rank']:g} | "
            f"{r['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {r['auc_gap']:.3f} | "
            f"{r['audit_rank']:g} | {r['F']:.3f} |"
        )
    rho = c["spearman"]
    fooled = c["svc_says_forgotten_audit_separates"]
    lines += [
        "",
        f"Rank 1 = closest to retrain. Spearman correlation of the two rankings: "
        f"{'-' if rho is None else f'{rho:.2f}'}. Called forgotten by the SVC attack (within "
        f"{tolerance:g} points of retrain's MIA efficacy) but told apart from retraining by "
        f"U-LiRA (AUC interval excludes 0.5): {', '.join(fooled) if fooled else 'none'}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--audit", type=Path, default=Path("results/audit"))
    ap.add_argument("--baselines", type=Path, default=Path("results/baselines"))
    ap.add_argument("--settings", default="random10,class3")
    ap.add_argument("--svc-tolerance", type=float, default=5.0)
    args = ap.parse_args()
    out: dict[str, Any] = {}
    parts = ["# Per-example audit vs the SVC attack", ""]
    for name in args.settings.split(","):
        audit = json.loads((args.audit / name / "results.json").read_text())
        base = json.loads((args.baselines / name / "results.json").read_text())
        out[name] = compare(audit, base, args.svc_tolerance)
        parts.append(render(name, audit["forget"], out[name], args.svc_tolerance))
    (args.audit / "vs_svc.json").write_text(json.dumps(out, indent=2))
    (args.audit / "vs_svc.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
