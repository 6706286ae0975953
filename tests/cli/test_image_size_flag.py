"""``--image-size`` on every command that trains from a config: the data sets that can resize
take it (and the model records it); the fixed-size ones refuse it in one line, exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app as base_app
from unlearnkit.cli import mount_subcommands

SMALL = (
    "dataset: synthetic\n"
    "dataset_options: {n_train: 40, n_test: 10, channels: 1}\n"
    "pretrain: false\nmodel_options: {width: 4}\n"
    "train: {epochs: 1}\nmethod_params: {finetune: {epochs: 1}}\nrelearn_max_epochs: 1\n"
)


@pytest.fixture(scope="module")
def app():
    mount_subcommands(base_app)
    return base_app


def test_unlearn_trains_at_the_size_given_and_records_it(app, tmp_path) -> None:
    (tmp_path / "c.yaml").write_text(SMALL)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        ["unlearn", "--method", "finetune", "--config", str(tmp_path / "c.yaml"),
         "--image-size", "12", "--threads", "1", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "model" / "model.safetensors.json").read_text())
    assert meta["image_size"] == 12 and meta["preprocessing"]["size"] == 12
    assert meta["config"]["dataset_options"]["image_size"] == 12


@pytest.mark.parametrize(
    "command",
    [
        ["demo"],
        ["unlearn", "--method", "finetune"],
        ["train"],
        ["audit", "--methods", "finetune"],
        ["memorize", "--method", "confidence"],
    ],
)
def test_a_fixed_size_set_refuses_it_in_one_line(app, tmp_path, command) -> None:
    res = CliRunner().invoke(
        app,
        [*command, "--dataset", "fashion_mnist", "--data-dir", str(tmp_path), "--image-size",
         "64", "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "image_size" in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "out").exists()
