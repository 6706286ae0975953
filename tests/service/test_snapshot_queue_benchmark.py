"""benchmarks/snapshot_queue.py end to end on the tests' saved S3T ensemble (benchmark mark:
it starts three services): every arm ran, the snapshot arms name the deletions right after a
snapshot, the no-snapshot arm has none, and a directory without an ensemble is one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "snapshot_queue.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.benchmark
def test_snapshot_queue_runs_every_arm(exact_dir, tmp_path):
    done = _run("--ensemble", str(exact_dir), "--deletions", "7", "--every", "3",
                "--clients", "2", "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "snapshot_queue.json").read_text())
    arms = res["arms"]
    assert set(arms) == {"full_copy", "snapshot_copy", "no_snapshot"}
    for name, arm in arms.items():
        assert arm["queue"]["n"] == res["deletions"] == 7
        assert (arm["after_snapshot_ms"] is None) == (name == "no_snapshot")
    assert len(arms["snapshot_copy"]["after_snapshot_ms"]) == 2  # deletions 3 and 6
    assert "| snapshot_copy |" in (tmp_path / "out" / "snapshot_queue.md").read_text()


def test_snapshot_queue_refuses_a_directory_without_an_ensemble(tmp_path):
    done = _run("--ensemble", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "holds no saved ensemble" in done.stderr
    assert "Traceback" not in done.stderr
