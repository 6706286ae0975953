"""``unlearn --from DIR``: flags the saved model fixes are refused, not silently dropped."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--seeds", "3"], "--seeds"),
        (["--model", "resnet18"], "--model"),
        (["--peft", "full", "--epochs", "2"], "--peft, --epochs"),
        (["--dataset", "synthetic"], "--dataset"),
        (["--subset", "100"], "--subset"),
    ],
)
def test_recipe_flags_with_from_are_refused(tmp_path, save_tiny_trained, flags, named) -> None:
    model_dir, out = tmp_path / "model", tmp_path / "out"
    save_tiny_trained(model_dir)
    res = CliRunner().invoke(
        app,
        ["unlearn", "--method", "finetune", "--from", str(model_dir), "--out", str(out), *flags],
    )
    assert res.exit_code == 2, res.output
    assert named in res.output and "saved model fixes its recipe" in res.output
    assert not out.exists()


def test_data_dir_and_forget_are_honoured(tmp_path, save_tiny_trained) -> None:
    model_dir, out = tmp_path / "model", tmp_path / "out"
    trained, _ = save_tiny_trained(model_dir)
    res = CliRunner().invoke(
        app,
        [
            "unlearn", "--method", "finetune", "--from", str(model_dir), "--out", str(out),
            "--forget", "class:2", "--param", "epochs=1", "--threads", "1",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["forget"] == "class:2" and results["seeds"] == [trained.seed]
    assert results["config"]["model_options"] == {"width": 4}  # the saved recipe, not defaults
