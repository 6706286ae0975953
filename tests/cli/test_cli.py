"""The CLI as a user meets it: real subprocesses, exit codes, no tracebacks, nothing written on
bad input."""

from __future__ import annotations

import json

import pytest
from cli_subprocess import cli

QUICK = ["--epochs", "3", "--seeds", "1"]


def test_demo_writes_results_report_and_figures(tmp_path):
    out = tmp_path / "demo"
    proc = cli("demo", "--out", str(out), "--methods", "finetune,neggrad", *QUICK)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["original", "retrain", "finetune", "neggrad"]
    assert (out / "report.md").read_text().startswith("# Unlearning report")
    assert (out / "accuracy.png").stat().st_size > 1000 and (out / "mia.png").is_file()
    assert "retrain" in proc.stdout
    # without a terminal the progress is one line per step (a log never sits silent)
    steps = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert [line.split("] ")[0] for line in steps] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert steps[-1].endswith("seed 0: neggrad")
    assert "| stage | wall s |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--model", "nope"], "unknown model 'nope'"),
        (["demo", "--methods", "finetune,bogus"], "unknown method 'bogus'"),
        (["demo", "--forget", "class:99"], "no such class"),
        (["demo", "--forget", "random:1.0"], "whole training set"),
        (["demo", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "cifar10"),
        (["unlearn", "--method", "salun", "--param", "lr=-1"], "'lr'"),
        (["unlearn", "--method", "salun", "--param", "oops"], "KEY=VALUE"),
        (["unlearn", "--method", "fast_ntk", "--peft", "full"], "fast_ntk needs --peft bn"),
        (["demo", "--model", "vit_tiny", "--peft", "bn"], "'bn' does not fit model 'vit_tiny'"),
        (["train", "--model", "vit_tiny"], "invalid peft: 'bn' does not fit model 'vit_tiny'"),
        (["train", "--peft", "prompts"], "'prompts' does not fit model 'smallcnn'"),
        (["evaluate", "--from", "/nonexistent"], "holds no trained model"),
        (["report", "/nonexistent"], "no results.json"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    proc = (
        cli(*args, "--out", str(tmp_path / "out"))
        if args[0] in ("demo", "unlearn", "train")
        else cli(*args)
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_train_unlearn_from_checkpoint_evaluate_report(tmp_path):
    model_dir, run_dir = tmp_path / "model", tmp_path / "run"
    proc = cli("train", "--out", str(model_dir), "--epochs", "3")
    assert proc.returncode == 0, proc.stderr
    assert (model_dir / "model.safetensors").is_file()
    proc = cli(
        "unlearn",
        "--method",
        "finetune",
        "--from",
        str(model_dir),
        "--forget",
        "class:1",
        "--param",
        "epochs=1",
        "--out",
        str(run_dir),
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["forget"] == "class:1"
    assert results["config"]["method_params"] == {"finetune": {"epochs": 1}}
    (run_dir / "report.md").unlink()
    assert cli("report", str(run_dir)).returncode == 0
    assert (run_dir / "report.md").is_file()
    proc = cli("evaluate", "--from", str(model_dir), "--forget", "class:1")
    assert proc.returncode == 0 and "MIA" in proc.stdout
    (model_dir / "model.safetensors").write_bytes(b"broken")
    proc = cli("evaluate", "--from", str(model_dir))
    assert proc.returncode == 2 and "corrupt" in proc.stderr


def test_existing_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "results.json").write_text("{}")
    proc = cli("demo", "--out", str(out), "--forget", "class:77")
    assert proc.returncode == 2
    assert (out / "results.json").read_text() == "{}"


def test_methods_lists_hyper_parameters():
    proc = cli("methods")
    assert proc.returncode == 0
    for name in ("salun", "scrub", "neggrad_plus", "saliency_fraction"):
        assert name in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["unlearn", "--method", "fast_ntk", "--peft", "full"],
        ["unlearn", "--method", "fast_ntk", "--model", "vit_tiny", "--peft", "bn"],
        ["train", "--model", "vit_tiny", "--peft", "bn"],
    ],
)
def test_mismatched_pairings_fail_before_data_or_training(tmp_path, monkeypatch, args):
    """Exit 2 at config validation: loading data or training would be minutes wasted."""
    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.recipe import build

    def never(*_args, **_kwargs):
        raise AssertionError("reached data loading or training")

    monkeypatch.setattr(build, "load_dataset", never)
    monkeypatch.setattr(build, "train", never)
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "peft" in res.output
    assert not (tmp_path / "out").exists()
