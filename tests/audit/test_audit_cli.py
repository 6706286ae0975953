"""``unlearnkit audit`` as a user meets it: a tiny run, resuming, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from unlearnkit.audit import FILES
from unlearnkit.cli.audit import mount

runner = CliRunner()
app = typer.Typer()


@app.callback()
def _root() -> None:
    """A root so ``audit`` stays a sub-command, as on the real app."""


mount(app)

TINY = {
    "model_options": {"width": 8},
    "dataset_options": {"subset": 300},
    "peft": "full",
    "pretrain": False,
    "train": {"epochs": 4, "lr": 0.05, "batch_size": 32},
    "method_params": {"neggrad": {"epochs": 1}},
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_audit_writes_the_run_directory_and_resumes(tmp_path, tiny_config):
    out = tmp_path / "runs" / "audit"
    args = ["audit", "--forget", "class:2", "--methods", "neggrad", "--k", "3", "--n", "2"]
    args += ["--threads", "1", "--n-boot", "50", "--config", str(tiny_config), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert sorted(p.name for p in out.parent.iterdir()) == ["audit", "audit.cache"]  # no staging
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["retrain", "neggrad"]
    assert results["machine"]["torch_threads"] == 1
    assert results["cost"]["models_trained_now"] == 9  # 3 pairs x (retrained, retrain, neggrad)
    assert {"forgetting_quality_official", "final_score_official"} <= set(
        results["summary"]["neggrad"]
    )
    assert results["control"]["method"] == "retrain"
    assert "Floor of" in res.output  # the control's official F, printed as the run's floor
    assert ("Control check passed" in res.output) == results["control"]["covers_chance"]
    # the default interval is the permutation null's: the CLI names what it told apart
    assert results["audit"]["interval"] == "permutation" and "Told apart from" in res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "results.json").read_text())["cost"]["models_trained_now"] == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "2"], "invalid k"),
        (["--n", "1"], "invalid n"),
        (["--rates", "exact"], "invalid rates"),
        (["--thresholds", "triple"], "invalid thresholds"),
        (["--executor", "bogus"], "--executor 'bogus'"),
        (["--methods", "nope"], "unknown method 'nope'"),
        (["--forget", "class:99"], "class:99"),
        (["--forget", "random:0.7"], "under half of D"),
        (["--ensembles", "s3t", "--ensemble-policies", "lazy"], "ensemble_policies"),
        (["--interval", "wald"], "invalid interval"),
    ],
)
def test_user_mistakes_are_one_line_and_write_nothing(tmp_path, tiny_config, flags, message):
    out = tmp_path / "audit"
    res = runner.invoke(app, ["audit", "--out", str(out), "--config", str(tiny_config), *flags])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists() and not Path(f"{out}.cache").exists()


def test_real_entry_point_mounts_audit():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnkit", "audit", "--k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: audit: invalid k: Input should be greater than or equal to 3"
    ]
