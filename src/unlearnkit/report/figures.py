"""matplotlib figures of a comparison (headless Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def accuracy_figure(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: retain / forget / test accuracy per method, dashed lines = retrain."""
    summary = results["summary"]
    methods = list(summary)
    parts = ["retain", "forget", "test"]
    width = 0.8 / len(parts)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(methods)), 4))
    for i, part in enumerate(parts):
        values = [summary[m][f"acc_{part}_mean"] for m in methods]
        xs = [j + (i - 1) * width for j in range(len(methods))]
        bars = ax.bar(xs, values, width, label=part)
        if "retrain" in summary:
            ax.axhline(
                summary["retrain"][f"acc_{part}_mean"],
                color=bars.patches[0].get_facecolor(),
                linestyle="--",
                linewidth=0.8,
            )
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{results['dataset']} / {results['model']}, forget {results['forget']} (dashed: retrain)"
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mia_figure(results: dict[str, Any], path: Path) -> None:
    summary = results["summary"]
    methods = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(methods)), 3.5))
    ax.bar(methods, [summary[m]["mia_efficacy_mean"] for m in methods], color="tab:purple")
    if "retrain" in summary:
        ax.axhline(
            summary["retrain"]["mia_efficacy_mean"],
            color="k",
            linestyle="--",
            linewidth=0.8,
            label="retrain",
        )
        ax.legend()
    ax.set_ylabel("MIA efficacy (%)")
    control = results.get("mia_control") or {}
    title = "forget samples judged non-members"
    if control.get("informative") is False:  # retrain's own spread covers the differences
        title += f"\nuninformative: retrain alone spans {control['retrain_spread']:.0f} points"
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
