"""The comparison tables in docs/results/ are rendered from the results files they cite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_tables_match_their_results_files() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "results_tables.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_drifted_table_is_caught(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import results_tables
    finally:
        sys.path.pop(0)
    source = "results/baselines/random10/results.json"
    text = (ROOT / "docs" / "results" / "digits.md").read_text()
    assert f"<!-- table: {source} -->" in text
    drifted = text.replace("| finetune | 99.6 |", "| finetune | 99.9 |", 1)
    assert drifted != text and results_tables.render(drifted) == text
