"""benchmarks/data_scale.py end to end on a tiny folder: the test split has the asked size (so
every folder size decodes the same number of images) and every stage records its memory."""

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "data_scale.py"


@pytest.mark.slow
def test_tiny_run_keeps_the_test_split_at_the_asked_size(tmp_path):
    args = ["--sizes", "200", "--train-subset", "60", "--test-images", "30",
            "--throughput-images", "40", "--repeats", "1", "--threads", "1", "--image-size",
            "32", "--data-root", str(tmp_path / "data"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = tmp_path / "data" / "runs_n200" / "model" / "manifest.csv"
    parts = Counter(row["part"] for row in csv.DictReader(manifest.open()))
    assert parts["test"] == 30 and parts["train"] == 60
    record = json.loads((tmp_path / "out" / "n200.json").read_text())
    assert record["test_images"] == 30
    assert [s["stage"] for s in record["stages"]] == ["train", "unlearn_finetune", "evaluate"]
    assert all(s["footprint_mb"] >= s["peak_rss_mb"] > 0 for s in record["stages"])
