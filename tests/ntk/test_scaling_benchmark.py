"""benchmarks/fast_ntk.py --part scaling must run end to end: its timing re-run once crashed in
the warm-up because a stand-in state lacked a field the library had gained (target_scale)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fast_ntk.py"


def test_scaling_builds_every_n_and_times_deletions_on_it(tmp_path):
    args = ["--part", "scaling", "--scaling-model", "smallcnn", "--sizes", "64,96",
            "--epoch-sizes", "64", "--scaling-ks", "1", "--scaling-budget-s", "120",
            "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["scaling"]["rows"]
    assert [r["N"] for r in rows] == [64, 96]
    assert all(r["built"] for r in rows)
    assert all(r["latency_s"]["1"] > 0 for r in rows)
