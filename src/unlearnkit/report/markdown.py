"""results.json -> report.md: one table per comparison, readable without the JSON."""

from __future__ import annotations

from typing import Any

from unlearnkit.metrics import censored_text


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(entry: dict[str, Any], key: str) -> str:
    mean, ci = entry[f"{key}_mean"], entry.get(f"{key}_ci95")
    return f"{mean:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def relearn_cell(entry: dict[str, Any]) -> str:
    """Relearn epochs with censored seeds shown (``>= ...``); older files: the plain mean."""
    if "relearn_epochs" in entry:
        return censored_text(entry["relearn_epochs"])
    return _fmt(entry.get("relearn_epochs_mean"))


def mia_uninformative(results: dict[str, Any]) -> bool:
    """True when the SVC attack's spread on retrain covers the methods' differences."""
    return (results.get("mia_control") or {}).get("informative") is False


def summary_table(results: dict[str, Any]) -> str:
    n = len(results["seeds"])
    mark = " (uninformative)" if mia_uninformative(results) else ""
    header = (
        f"| method | retain % | forget % | test % | MIA eff. %{mark} | ToW [95% CI, n={n}] | "
        f"ToW-MIA{mark} [95% CI, n={n}] | relearn ep. | time s | peak MB | params touched |"
    )
    lines = [header, "|" + "---|" * 11]
    for method, s in results["summary"].items():
        lines.append(
            f"| {method} | {_fmt(s['acc_retain_mean'])} | {_fmt(s['acc_forget_mean'])} | "
            f"{_fmt(s['acc_test_mean'])} | {_fmt(s['mia_efficacy_mean'])} | {_ci(s, 'tow')} | "
            f"{_ci(s, 'tow_mia')} | {relearn_cell(s)} | "
            f"{_fmt(s['time_s_mean'], 2)} | {_fmt(s['peak_mem_mb_mean'])} | "
            f"{int(s['params_touched_mean'])} |"
        )
    return "\n".join(lines)


def stages_table(results: dict[str, Any]) -> str:
    """Wall time and peak extra memory of every stage, with the run's total and peak RSS."""
    lines = ["| stage | wall s | peak extra MB |", "|---|---|---|"]
    lines += [
        f"| {st['stage']} | {st['time_s']:.1f} | {st['peak_mem_mb']:.0f} |"
        for st in results["stages"]
    ]
    lines.append(
        f"| **whole run** | {results['wall_s']:.1f} | peak RSS {results['peak_rss_mb']:.0f} MB |"
    )
    return "\n".join(lines)


def result_warnings(results: dict[str, Any]) -> list[str]:
    """The findings a command line must print: a failed reference check, an uninformative
    MIA, censored relearn means."""
    found = []
    check = results.get("reference_check")
    if check and check["warning"]:
        found.append(check["warning"])
    if mia_uninformative(results):
        spread = results["mia_control"]["retrain_spread"]
        found.append(
            f"MIA efficacy is uninformative here: retrain's own spread over seeds "
            f"({spread:.1f} points) covers the methods' differences; do not rank by it"
        )
    censored = [
        m for m, s in results["summary"].items() if s.get("relearn_epochs", {}).get("censored")
    ]
    if censored:
        found.append(
            f"relearn censored (never reached the threshold within the budget) on some seeds "
            f"for: {', '.join(censored)}; their relearn values are lower bounds"
        )
    return found


def notes(results: dict[str, Any]) -> list[str]:
    """What a reader must know to trust the table: intervals, BatchNorm policy, relearn mode,
    the MIA control and the reference check (each only when the results file records it)."""
    lines = []
    if "intervals" in results:
        lines.append(
            f"- Intervals: {results['intervals']['method']}, n = "
            f"{results['intervals']['n_seeds']} seeds; with few seeds they are narrow and no "
            "difference is called a beat (metrics/intervals.py states the rule)."
        )
    if "bn_mode" in results:
        lines.append(
            f"- BatchNorm statistics during unlearning: `{results['bn_mode']}`; relearning runs "
            f"with BatchNorm `{results.get('relearn_bn', '?')}` for every method."
        )
    control = results.get("mia_control")
    if control and control["retrain_spread"] is not None:
        per_seed = ", ".join(f"{v:.1f}" for v in control["retrain_per_seed"])
        verdict = (
            "**uninformative here: do not rank methods by MIA efficacy or ToW-MIA**"
            if control["informative"] is False
            else "informative (the methods differ by more than the control's spread)"
        )
        lines.append(
            f"- MIA control: retrain's own MIA efficacy per seed {per_seed} (spread "
            f"{control['retrain_spread']:.1f} points) against a span of "
            f"{control['methods_span']:.1f} points between the methods' means: {verdict}."
        )
    check = results.get("reference_check")
    if check:
        if check["warning"]:
            lines.append(f"- **Reference check failed**: {check['warning']}.")
        else:
            lines.append(
                f"- Reference check: retrain {check['retrain_heldout']:.1f}% on held-out data vs "
                f"the original's {check['original_heldout']:.1f}% (tolerance "
                f"{check['tolerance']} points): ok."
            )
    return lines


def render_report(results: dict[str, Any], figures: list[str]) -> str:
    seeds = results["seeds"]
    parts = [
        f"# Unlearning report: {results['dataset']} / {results['model']}",
        "",
        f"Forget set `{results['forget']}`, seeds {seeds}, trainable mode `{results.get('peft')}` "
        f"({results.get('trainable_params')} of {results.get('total_params')} parameters).",
        "Accuracies are means over seeds; ToW and ToW-MIA are measured against `retrain` "
        "(1.0 = indistinguishable); the 95% interval needs at least 2 seeds. `original` is the "
        "model before unlearning. MIA efficacy = % of the forget set an SVC attack calls "
        "non-member. Relearn `>= x (k/n seeds >= B)`: k seeds never relearned within B epochs; "
        "x counts them at B, a lower bound.",
        "",
        *notes(results),
        "",
        summary_table(results),
        "",
    ]
    if results.get("stages"):
        parts += [stages_table(results), ""]
    parts += [f"![{name}]({name})" for name in figures]
    return "\n".join(parts) + "\n"
