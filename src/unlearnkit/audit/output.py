"""An audit's run directory: results.json, report.md, llr.npz / llr.csv, epsilon.csv and
llr_hist.png, built in a temporary sibling and renamed into place (never half-written)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from unlearnkit.audit.run import AuditRun
from unlearnkit.report import staged_run_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt

FILES = ("results.json", "report.md", "llr.npz", "llr.csv", "epsilon.csv", "llr_hist.png")


def write_audit(run: AuditRun, out: Path) -> Path:
    """Write every file into a staging directory next to ``out``, then swap it into place."""
    with staged_run_dir(out) as staging:
        (staging / "results.json").write_text(json.dumps(run.results, indent=2))
        np.savez(
            staging / "llr.npz",
            **{f"{m}/{key}": v for m, arrays in run.arrays.items() for key, v in arrays.items()},
        )
        _write_llr_csv(run, staging / "llr.csv")
        _write_epsilon_csv(run, staging / "epsilon.csv")
        llr_figure(run, staging / "llr_hist.png")
        (staging / "report.md").write_text(render_report(run.results))
    return Path(out)


def _write_llr_csv(run: AuditRun, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "pair", "example_id", "model", "phi", "llr"])
        for method, a in run.arrays.items():
            for role in ("unlearned", "retrained"):
                for pair, ex, phi, llr in zip(
                    a["pair"], a["example_id"], a[f"phi_{role}"], a[f"llr_{role}"], strict=True
                ):
                    writer.writerow([method, int(pair), int(ex), role, f"{phi:.6g}", f"{llr:.6g}"])


def _write_epsilon_csv(run: AuditRun, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["method", "example_id", "epsilon", "score", "epsilon_official", "score_official"]
        )
        for method, a in run.arrays.items():
            for row in zip(
                a["challenge_example_id"],
                a["epsilon"],
                a["epsilon_score"],
                a["epsilon_official"],
                a["epsilon_score_official"],
                strict=True,
            ):
                writer.writerow([method, int(row[0]), *(f"{v:.6g}" for v in row[1:])])


def llr_figure(run: AuditRun, path: Path) -> None:
    """Per method: histograms of the U-LiRA statistic of unlearned models on their forget
    examples and of retrained models on the same examples (true non-members). Overlapping
    histograms = the attack cannot tell them apart (AUC 0.5)."""
    methods = list(run.arrays)
    cols = min(3, len(methods))
    rows = (len(methods) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, method in zip(axes.ravel(), methods, strict=False):
        a = run.arrays[method]
        both = np.concatenate([a["llr_unlearned"], a["llr_retrained"]])
        both = both[np.isfinite(both)]
        low, high = np.quantile(both, [0.005, 0.995]) if both.size else (-1.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1, 40)
        ax.hist(np.clip(a["llr_retrained"], low, high), bins, alpha=0.6, label="retrained")
        ax.hist(np.clip(a["llr_unlearned"], low, high), bins, alpha=0.6, label="unlearned")
        s = run.results["summary"][method]
        ax.set_title(
            f"{method}: AUC {s['auc']:.3f}, F ours {s['forgetting_quality']:.3f}, "
            f"official {s['forgetting_quality_official']:.3f}",
            fontsize=8,
        )
        ax.set_xlabel("log-likelihood ratio (in vs out)")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(methods) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interval(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def summary_table(results: dict[str, Any]) -> str:
    head = (
        "| method | AUC [95% CI] | TPR@1% FPR [95% CI] | TPR@0.1% FPR | F ours [95% CI] | "
        "F official [95% CI] | RA_U / RA_R | TA_U / TA_R | score ours | score official |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for method, s in results["summary"].items():
        name = method if "policy" not in s else f"{method} ({s['policy']})"
        lines.append(
            f"| {name} | {s['auc']:.3f} {_interval(s['auc_ci95'])} | "
            f"{s['tpr_at_1pct_fpr']:.3f} {_interval(s['tpr_at_1pct_fpr_ci95'])} | "
            f"{s['tpr_at_0.1pct_fpr']:.3f} | "
            f"{s['forgetting_quality']:.3f} {_interval(s['forgetting_quality_ci95'])} | "
            f"{s['forgetting_quality_official']:.3f} "
            f"{_interval(s['forgetting_quality_official_ci95'])} | "
            f"{s['retain_acc_unlearned']:.1f} / {s['retain_acc_retrained']:.1f} | "
            f"{s['test_acc_unlearned']:.1f} / {s['test_acc_retrained']:.1f} | {s['score']:.3f} | "
            f"{s['final_score_official']:.3f} |"
        )
    return "\n".join(lines)


def control_lines(results: dict[str, Any]) -> str:
    """The control's verdict and the run's floor, for the report and the CLI."""
    c = results.get("control") or {}
    if c.get("method") is None:
        return "No exact control in this run: nothing says how far chance alone moves it."
    floor = (
        f"Floor of this run: {c['method']}, the exact control, scores F official "
        f"{c['floor_forgetting_quality_official']:.3f} "
        f"(F ours {c['floor_forgetting_quality']:.3f}); "
        "a method at or above the floor is as indistinguishable from retraining as this run "
        "can show, whatever its distance from 1."
    )
    null = c.get("auc_null95")
    against = (
        ""
        if null is None
        else f" (the AUC {'lies within' if c['covers_chance'] else 'lies outside'} the "
        f"permutation null's central 95%, {_interval(null)})"
    )
    if c["covers_chance"]:
        verdict = (
            f"Control check passed: {c['method']} AUC {c['auc']:.3f} "
            f"{_interval(c['auc_ci95'])} covers 0.5{against}."
        )
    else:
        verdict = (
            f"WARNING: {c['warning']}: the exact control {c['method']} scores AUC "
            f"{c['auc']:.3f} {_interval(c['auc_ci95'])}, an interval that excludes 0.5"
            f"{against} (raise --k or change --seed; docs/audit.md, the K study)."
        )
    return f"{verdict}\n\n{floor}"


def distinguishable_line(results: dict[str, Any]) -> str:
    """Which methods the U-LiRA AUC sets apart from retraining (interval above 0.5)."""
    apart = [m for m, s in results["summary"].items() if s.get("distinguishable")]
    rule = (
        "AUC above the permutation null's 97.5% quantile"
        if results["audit"].get("interval") == "permutation"
        else "AUC interval above 0.5"
    )
    named = ", ".join(apart) if apart else "none"
    return f"Told apart from retraining ({rule}): {named}."


def render_report(results: dict[str, Any]) -> str:
    p, c, a = results["protocol"], results["cost"], results["audit"]
    return f"""# Unlearning audit: {results["dataset"]} / {results["model"]} ({results["peft"]}), \
forget {results["forget"]}

U-LiRA over {p["pairs"]} shadow pairs ({p["targets"]} target examples; forget set
{"the same in every pair" if p["forget_is_fixed"] else "a random half of the targets per pair"});
NeurIPS 2023 challenge score over {p["challenge_models"]} unlearned and {p["challenge_models"]}
retrained models on the {p["forget_size"]} forget examples (delta {a["delta"]}, bucket width
{a["bucket_width"]}, {a["rates"]} rates). Perfect unlearning: AUC 0.5, TPR at x% FPR about x%,
F 1. U-LiRA intervals: {a.get("interval", "pair_bootstrap")} over the {p["pairs"]} pairs
({a["n_boot"]} resamples at most). See docs/audit.md for the definitions.

{summary_table(results)}

{distinguishable_line(results)}

{control_lines(results)}

F ours: Clopper-Pearson rates, every threshold and interval between the pooled outputs, no
bucket ceiling. F official: the organisers' definition (plain rates, their grid of thresholds
and intervals, epsilon capped at 50, buckets up to ceil(log(N - 1))). Score = F x RA_U / RA_R x
TA_U / TA_R for each.

![per-example log-likelihood ratios](llr_hist.png)

`llr_hist.png`: per method, the U-LiRA statistic of unlearned models on their forget examples
against that of retrained models on the same examples; the further apart, the more the method
leaves behind. `llr.csv` / `llr.npz`: every (model, example) statistic; `epsilon.csv`: the
challenge's epsilon and score per forget example.

Cost: {c["models"]} models ({c["models_trained_now"]} trained now, {c["models_from_cache"]}
from the cache), {c["model_seconds"]:.1f} s of model time, {c["wall_seconds"]:.1f} s wall
({c["executor"]} executor).
"""
