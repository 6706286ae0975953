"""``--device`` / ``--precision`` on the heavy commands: a device that is not here, an unknown
spelling or fp16 on the CPU is one line, exit code 2, before any data is read or file written."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from unlearnkit.cli import app as base_app
from unlearnkit.cli import mount_subcommands
from unlearnkit.runtime import current_runtime
from unlearnkit.runtime.device import using_runtime

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")

BAD = [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cpu", "--precision", "fp16"], "fp16 needs a GPU"),
    (["--precision", "half"], "precision"),
]
if not torch.cuda.is_available():
    BAD.append((["--device", "cuda"], "CUDA is not available"))

COMMANDS = [
    ["train", "--epochs", "1"],
    ["demo", "--epochs", "1"],
    ["unlearn", "--method", "finetune", "--epochs", "1"],
    ["s3t", "train", "--epochs", "1"],
    ["sisa", "train", "--epochs", "1"],
    ["memorize", "--method", "confidence"],
]


app = typer.Typer(pretty_exceptions_enable=False)  # the root commands plus every sub-command
app.registered_commands = list(base_app.registered_commands)
app.registered_groups = list(base_app.registered_groups)
mount_subcommands(app)


@pytest.fixture(autouse=True)
def _keep_runtime():
    with using_runtime(current_runtime()):  # a command activates its own; restore ours after
        yield


@pytest.mark.parametrize("flags,message", BAD)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_bad_device_or_precision_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, command, flags, message
) -> None:
    from unlearnkit.recipe import build

    def never(*_args, **_kwargs):
        raise AssertionError("reached data loading")

    monkeypatch.setattr(build, "load_dataset", never)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*command, *flags, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert message in res.output
    assert not out.exists()


@no_cuda
@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--from"],
        ["s3t", "predict", "--from"],
        ["s3t", "delete", "--ids", "1", "--from"],
        ["ntk", "precompute", "--from"],
        ["ntk", "delete", "--ids", "1", "--from"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_model_directory_commands_refuse_cuda_before_reading(tmp_path, command) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    res = CliRunner().invoke(app, [*command, str(model_dir), "--device", "cuda"])
    assert res.exit_code == 2, res.output
    assert "CUDA is not available" in res.output
    assert list(model_dir.iterdir()) == []


def test_config_file_device_is_validated(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("device: gpu0\n")
    res = CliRunner().invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "invalid device" in res.output and "gpu0" in res.output
    assert not (tmp_path / "o").exists()
