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


@pytest.mark.benchmark
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


def _record(files, footprint, ratio=1.0):
    stage = {"stage": "evaluate", "peak_rss_mb": 1000.0, "main_pss_mb": 0.0, "main_uss_mb": 0.0,
             "peak_worker_rss_mb": 0.0, "worker_pss_mb": 0.0, "worker_uss_mb": 0.0,
             "workers_uss_sum_mb": 0.0, "footprint_mb": footprint}  # fmt: skip
    return {"files": files, "stages": [stage], "throughput": {"ratio": ratio}}


def test_summary_checks_the_growth_of_the_stages_not_the_sizes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("data_scale", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    met = bench.summarise([_record(10_000, 1800.0), _record(100_000, 1900.0)], workers=2)
    assert met["footprint_growth_mb"]["evaluate"] == 100.0 and met["rss_target_met"] is True
    missed = bench.summarise([_record(10_000, 1800.0), _record(100_000, 2101.0, 0.8)], 2)
    assert missed["rss_target_met"] is False and missed["throughput_target_met"] is False
