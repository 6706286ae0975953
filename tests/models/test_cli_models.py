"""Bringing a model through the CLI: a torchvision ResNet-18 checkpoint saved under DDP with
1,000 classes starts a 10-class digits run; each misfit is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision
from cli_subprocess import cli
from safetensors.torch import load_file

QUICK = ["--epochs", "1", "--threads", "2"]


@pytest.fixture(scope="module")
def ddp_imagenet_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision's resnet18 with 1,000 classes, saved as a DDP training script would."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "resnet18_ddp.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path, state


@pytest.mark.slow
def test_ddp_imagenet_checkpoint_starts_a_ten_class_digits_run(tmp_path, ddp_imagenet_checkpoint):
    path, state = ddp_imagenet_checkpoint
    out = tmp_path / "model"
    proc = cli(
        "train",
        "--model",
        "torchvision:resnet18",
        "--weights",
        str(path),
        "--weights-skip-head",
        "--out",
        str(out),
        *QUICK,
    )
    assert proc.returncode == 0, proc.stderr
    initial = load_file(str(out / "initial.safetensors"))  # w0: the checkpoint + a new head
    assert initial["fc.weight"].shape == (10, 512)
    assert torch.equal(initial["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    # digits are grey-scale: the RGB first conv was folded to one channel
    torch.testing.assert_close(
        initial["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True)
    )
    trained = load_file(str(out / "model.safetensors"))
    assert trained["fc.weight"].shape == (10, 512)
    assert not torch.equal(trained["fc.weight"], initial["fc.weight"])  # the head trained


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_head_mismatch_is_one_line_and_nothing_is_written(tmp_path, ddp_imagenet_checkpoint):
    path, _ = ddp_imagenet_checkpoint
    out = tmp_path / "model"
    proc = cli(
        "train", "--model", "torchvision:resnet18", "--weights", str(path), "--out", str(out)
    )
    line = one_line_error(proc)
    assert "fc.weight 1000x512 vs 10x512" in line and "--weights-skip-head" in line
    assert not out.exists()


def test_pickled_model_is_one_line(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=10), tmp_path / "whole.pt")
    out = tmp_path / "model"
    proc = cli(
        "train",
        "--model",
        "torchvision:resnet18",
        "--weights",
        str(tmp_path / "whole.pt"),
        "--out",
        str(out),
    )
    assert "pickled Python objects (torchvision.models.resnet.ResNet" in one_line_error(proc)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet50"], "unknown model 'resnet50'; closest: timm:resnet50"),
        (["--model", "timm:resnt18"], "closest: timm:resnet18"),
        (["--model", "timm:resnet18", "--model-option", "bogus=1"], "bogus"),
        (["--model", "timm:resnet18", "--model-option", "oops"], "--model-option 'oops'"),
        (["--weights-skip-head"], "weights_skip_head needs weights"),
        (["--model", "module:nowhere_xyz:make"], "cannot import 'nowhere_xyz'"),
    ],
)
def test_bad_model_input_is_one_line(tmp_path, args, message):
    out = tmp_path / "model"
    line = one_line_error(cli("train", "--out", str(out), *args, *QUICK))
    assert message in line
    assert not out.exists()


@pytest.mark.slow
def test_timm_model_with_options_and_a_named_head(tmp_path):
    out = tmp_path / "model"
    proc = cli(
        "train",
        "--model",
        "timm:resnet18",
        "--model-option",
        "drop_rate=0.1",
        "--head",
        "fc",
        "--no-pretrain",
        "--out",
        str(out),
        *QUICK,
    )
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "model.safetensors.json").read_text())
    assert meta["config"]["model"] == "timm:resnet18"
    assert meta["config"]["model_options"] == {"drop_rate": 0.1, "head": "fc"}
    evaluated = cli("evaluate", "--from", str(out))  # reopened from its recipe alone
    assert evaluated.returncode == 0, evaluated.stderr
