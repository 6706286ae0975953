"""benchmarks/s3t_trunk_study.py: the one-factor-at-a-time design and a tiny run end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "s3t_trunk_study.py"


def _args(**over):
    spec = importlib.util.spec_from_file_location("s3t_trunk_study", SCRIPT)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    base = dict(design="oat", shards=[5, 10, 20, 50], adapt=["all", "4", "3"], ranks=[4, 8, 16],
                epochs=[1, 2], centre_shards=10, centre_adapt="3", centre_rank=8,
                centre_epochs=1, seeds=3, sweep_seeds=1)  # fmt: skip
    return study, type("Args", (), {**base, **over})()


def test_oat_design_varies_one_factor_at_a_time_and_seeds_the_centre():
    study, args = _args()
    points = study.design(args)
    assert points[0] == ((10, "3", 8, 1), 3)
    others = [p for p, seeds in points[1:] if seeds == 1]
    assert len(others) == len(points) - 1 == 3 + 2 + 2 + 1
    for point in others:  # each differs from the centre in exactly one factor
        assert sum(a != b for a, b in zip(point, (10, "3", 8, 1), strict=True)) == 1
    _, full = _args(design="grid")
    assert len(study.design(full)) == 4 * 3 * 3 * 2


@pytest.mark.benchmark
def test_tiny_study_runs_end_to_end(tmp_path):
    args = ["--dataset", "digits", "--shards", "2", "3", "--centre-shards", "2", "--adapt",
            "3", "--centre-adapt", "3", "--ranks", "4", "--centre-rank", "4", "--epochs", "1",
            "--centre-epochs", "1", "--seeds", "1", "--deletions", "5", "10", "--max-train",
            "300", "--latency-reps", "2", "--threads", "1", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "study.json").read_text())
    assert [(r["scheme"], r["shards"]) for r in res["rows"]] == [
        ("s3t", 2), ("sisa", 2), ("s3t", 3), ("sisa", 3)
    ]  # fmt: skip
    for row in res["rows"]:
        assert set(row["acc"]) == {"0", "5", "10"}
        assert row["latency_ms_16"][0] > 0 and row["seeds"] == 1


def _part(folder, first_seed, s3t_acc, sisa_acc):
    """A one-seed study.json as the script writes it (runs of the old format: no seed field)."""
    run = lambda acc: {"acc": {"0": acc, "50": acc - 0.1}, "retrains": {"0": 0, "50": 3},  # noqa: E731
                       "train_seconds": 1.0, "latency_ms_16": 2.0}  # fmt: skip
    rows = [{"scheme": s, "shards": 10, "adapt": "3", "rank": 8, "epochs": 1, "runs": [run(a)]}
            for s, a in (("s3t", s3t_acc), ("sisa", sisa_acc))]  # fmt: skip
    args = {"design": "oat", "deletions": [50], "first_seed": first_seed, "threads": 1}
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({
        "args": args, "complete": True, "backbone_alone_runs": [90.0 + first_seed],
        "wall_s": 10.0 + first_seed, "load_end": [first_seed, 0, 0], "threads": 1,
        "rows": rows}))  # fmt: skip
    return folder


def test_merge_pools_the_seeds_and_pairs_s3t_with_sisa_by_seed(tmp_path):
    parts = [_part(tmp_path / f"s{i}", i, 90.5 + i, 90.4 + 2 * i) for i in range(3)]
    args = ["--merge", *map(str, parts), "--out", str(tmp_path / "all")]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "all" / "study.json").read_text())
    assert res["backbone_alone_runs"] == [90.0, 91.0, 92.0] and res["complete"]
    s3t = next(r for r in res["rows"] if r["scheme"] == "s3t")
    assert s3t["seeds"] == 3 and [r["seed"] for r in s3t["runs"]] == [0, 1, 2]
    mean, low, high = s3t["acc"]["0"]
    assert mean == 91.5 and 90.5 <= low < mean < high <= 92.5  # inside the values' range
    md = (tmp_path / "all" / "study.md").read_text()
    # per seed S3T - SISA = 0.1, -0.9, -1.9 -> mean -0.9; 3 seeds: no verdict
    assert "| 10 | 3 | 8 | 1 | 3 | -0.90 [" in md and "too few seeds" in md
    # each seed's ensemble minus that seed's backbone: 0.5 at 0, 0.4 after 50 deletions
    s3t_line = next(line for line in md.splitlines() if line.startswith("| s3t |"))
    assert "| 0.50 | 0.40 |" in s3t_line
    assert res["backbone_alone_by_seed"] == {"0": 90.0, "1": 91.0, "2": 92.0}
    assert res["args"]["parts_wall_s"] == [10.0, 11.0, 12.0]
    assert [x[0] for x in res["args"]["parts_load_end"]] == [0, 1, 2]
    _part(tmp_path / "odd", 3, 90.0, 90.0)
    odd = json.loads((tmp_path / "odd" / "study.json").read_text())
    odd["args"]["deletions"] = [100]
    (tmp_path / "odd" / "study.json").write_text(json.dumps(odd))
    args = ["--merge", str(parts[0]), str(tmp_path / "odd"), "--out", str(tmp_path / "bad")]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode != 0 and "different --deletions" in done.stderr
    assert not (tmp_path / "bad").exists()
