"""Fill the comparison tables of docs/results/*.md from the results.json files they cite.

    python docs/results_tables.py            # rewrite every marked table
    python docs/results_tables.py --check    # exit 1 if a marked table differs from its source

A table is marked by two comments around it:

    <!-- table: results/baselines/random10/results.json -->
    | method | ... |
    <!-- /table -->

and is rendered by the same code that writes each run's report.md: ``experiment.judged`` sums
the file's per-seed rows up (today's intervals and censoring rules) and ``report.markdown`` draws
the table, so a figure in the docs cannot drift from the results file it comes from:
tests/architecture runs --check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from unlearnkit.experiment import judged
from unlearnkit.report.markdown import summary_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs" / "results").glob("*.md"))
BLOCK = re.compile(r"(<!-- table: (?P<src>\S+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def render(text: str) -> str:
    """``text`` with every marked table re-rendered from its results file."""

    def fill(match: re.Match[str]) -> str:
        source = ROOT / match["src"]
        table = summary_table(judged(json.loads(source.read_text())))
        return f"{match.group(1)}{table}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a table is out of date")
    args = parser.parse_args()
    stale = []
    for path in DOCS:
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"out of date: {', '.join(map(str, stale))}; run python docs/results_tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
