"""results.json -> report.md: one table per comparison, readable without the JSON."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(entry: dict[str, Any], key: str) -> str:
    mean, ci = entry[f"{key}_mean"], entry.get(f"{key}_ci95")
    return f"{mean:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def summary_table(results: dict[str, Any]) -> str:
    header = (
        "| method | retain % | forget % | test % | MIA eff. % | ToW [95% CI] | "
        "ToW-MIA [95% CI] | relearn ep. | time s | peak MB | params touched |"
    )
    lines = [header, "|" + "---|" * 11]
    for method, s in results["summary"].items():
        lines.append(
            f"| {method} | {_fmt(s['acc_retain_mean'])} | {_fmt(s['acc_forget_mean'])} | "
            f"{_fmt(s['acc_test_mean'])} | {_fmt(s['mia_efficacy_mean'])} | {_ci(s, 'tow')} | "
            f"{_ci(s, 'tow_mia')} | {_fmt(s['relearn_epochs_mean'])} | "
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


def render_report(results: dict[str, Any], figures: list[str]) -> str:
    seeds = results["seeds"]
    parts = [
        f"# Unlearning report: {results['dataset']} / {results['model']}",
        "",
        f"Forget set `{results['forget']}`, seeds {seeds}, trainable mode `{results.get('peft')}` "
        f"({results.get('trainable_params')} of {results.get('total_params')} parameters).",
        "Accuracies are means over seeds; ToW and ToW-MIA are measured against `retrain` "
        "(1.0 = indistinguishable); the 95% CI needs at least 2 seeds. `original` is the model "
        "before unlearning. MIA efficacy = % of the forget set an SVC attack calls non-member.",
        "",
        summary_table(results),
        "",
    ]
    if results.get("stages"):
        parts += [stages_table(results), ""]
    parts += [f"![{name}]({name})" for name in figures]
    return "\n".join(parts) + "\n"
