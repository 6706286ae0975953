"""benchmarks/tune.py, the documented way to tune a method for a new data set: it must run
each grid point with its own parameters, rank them by ToW against the retrain row, and refuse
a bad grid before any training."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "tune.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def test_grid_points_are_ranked_by_tow_against_retrain(tmp_path):
    out = tmp_path / "tune"
    args = "--method neggrad --grid lr=0.0001,5 --grid epochs=1 --settings class3 --subset 400"
    done = _run(*args.split(), "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    rows = doc["rows"]
    assert [r["method"] for r in rows] == ["retrain", "neggrad", "neggrad"]
    assert rows[0]["tow"] == 1.0 and rows[0]["acc"]["forget"] == 0.0
    points = rows[1:]
    assert sorted(r["params"]["lr"] for r in points) == [0.0001, 5]
    assert all(r["params"]["epochs"] == 1 for r in points)
    assert points[0]["tow"] >= points[1]["tow"]  # best first
    assert points[0]["acc"] != points[1]["acc"]  # the two learning rates were really used
    assert doc["machine"]["torch_threads"] == 1
    report = (out / "report.md").read_text()
    assert "lr=5, epochs=1" in report and "(retrain)" in report


def test_a_bad_grid_fails_before_training(tmp_path):
    done = _run("--method", "neggrad", "--grid", "lr=-1", "--out", str(tmp_path / "t"))
    assert done.returncode == 2 and "lr" in done.stderr and "greater than 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "t").exists()
