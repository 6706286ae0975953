"""What moved between two runs of the same comparison: per method, each summary figure of the
old and the new results.json (summed up by today's rules, ``experiment.judged``), the change,
and whether the change lies outside the new run's 95% interval for ToW / ToW-MIA.

An old run is usually in git history: ``--old git:REV:path`` reads it from there.

    python benchmarks/compare_runs.py --old git:HEAD~1:results/baselines/class3/results.json \
        --new results/baselines/class3/results.json --out results/baselines/class3/moved.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from unlearnkit.experiment import judged

FIGURES = ("acc_retain_mean", "acc_forget_mean", "acc_test_mean", "mia_efficacy_mean",
           "tow_mean", "tow_mia_mean", "relearn_epochs_mean")  # fmt: skip
INTERVALS = {"tow_mean": "tow_ci95", "tow_mia_mean": "tow_mia_ci95"}


def read(source: str) -> dict[str, Any]:
    """A results.json from a path or from ``git:REV:path``."""
    if source.startswith("git:"):
        _, rev, path = source.split(":", 2)
        text = subprocess.run(["git", "show", f"{rev}:{path}"], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
        return json.loads(text)
    return json.loads(Path(source).read_text())


def moved(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (method, figure) present in both runs."""
    a, b = judged(old)["summary"], judged(new)["summary"]
    rows = []
    for method in b:
        if method not in a:
            continue
        for fig in FIGURES:
            x, y = a[method].get(fig), b[method].get(fig)
            if x is None or y is None:
                continue
            row = {"method": method, "figure": fig, "old": x, "new": y, "change": y - x}
            ci = b[method].get(INTERVALS.get(fig, ""))
            if ci:
                row["old_outside_new_ci95"] = not (ci[0] <= x <= ci[1])
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], old: str, new: str) -> str:
    lines = [f"# What moved: `{old}` -> `{new}`", "",
             "| method | figure | old | new | change | old outside new 95% CI |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        flag = {True: "yes", False: "no"}.get(r.get("old_outside_new_ci95"), "-")
        lines.append(f"| {r['method']} | {r['figure']} | {r['old']:.3f} | {r['new']:.3f} | "
                     f"{r['change']:+.3f} | {flag} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="a results.json path or git:REV:path")
    ap.add_argument("--new", required=True)
    ap.add_argument("--out", type=Path, required=True, help="moved.json (and moved.md beside)")
    args = ap.parse_args()
    rows = moved(read(args.old), read(args.new))
    args.out.write_text(json.dumps({"old": args.old, "new": args.new, "rows": rows}, indent=1))
    text = markdown(rows, args.old, args.new)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
