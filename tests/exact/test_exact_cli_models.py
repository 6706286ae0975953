"""``s3t train`` / ``sisa train`` take the model flags ``train`` takes: ``--weights-skip-head``
(a torchvision checkpoint saved under DDP with 1,000 classes becomes a 10-class ensemble's
backbone), ``--model-option`` and ``--head``; misuse is one line, exit 2, nothing written."""

from __future__ import annotations

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from unlearnkit.exact.store import read_ensemble

TINY = ["--shards", "2", "--slices", "1", "--epochs", "1", "--rank", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def ddp_imagenet_checkpoint(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    """torchvision's resnet18 with 1,000 classes, saved as a DDP training script would."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "resnet18_ddp.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return str(path), state


def test_s3t_train_loads_an_imagenet_backbone_with_weights_skip_head(
    cli, ddp_imagenet_checkpoint, tmp_path
):
    path, state = ddp_imagenet_checkpoint
    out = tmp_path / "ens"
    args = ["--model", "torchvision:resnet18", "--weights", path, "--weights-skip-head"]
    res = CliRunner().invoke(cli, ["s3t", "train", "--out", str(out), *args, *TINY])
    assert res.exit_code == 0, res.output
    saved = read_ensemble(out)
    backbone = saved.backbone
    assert backbone["fc.weight"].shape == (10, 512)  # a new head for digits' 10 classes
    assert torch.equal(backbone["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    # digits are grey-scale: the RGB first conv was folded to one channel
    torch.testing.assert_close(
        backbone["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True)
    )
    assert saved.meta["backbone"] == path


def test_sisa_train_without_skip_head_refuses_the_imagenet_head(
    cli, ddp_imagenet_checkpoint, tmp_path
):
    path, _ = ddp_imagenet_checkpoint
    out = tmp_path / "ens"
    args = ["--model", "torchvision:resnet18", "--weights", path]
    res = CliRunner().invoke(cli, ["sisa", "train", "--out", str(out), *args, *TINY])
    assert res.exit_code == 2
    assert "fc.weight 1000x512 vs 10x512" in res.output and "--weights-skip-head" in res.output
    assert not out.exists()


def test_model_option_and_head_reach_the_ensemble_config(cli, tmp_path):
    out = tmp_path / "ens"
    flags = ["--model", "timm:resnet18", "--model-option", "drop_rate=0.1", "--head", "fc"]
    res = CliRunner().invoke(cli, ["s3t", "train", "--out", str(out), "--no-pretrain", *flags,
                                   *TINY])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = read_ensemble(out)
    assert saved.config["model_options"] == {"drop_rate": 0.1, "head": "fc"}
    assert saved.spec.options == {"drop_rate": 0.1, "head": "fc"}


@pytest.mark.parametrize(
    "scheme, args, message",
    [
        ("s3t", ["--weights-skip-head"], "weights_skip_head needs weights"),
        ("sisa", ["--model-option", "oops"], "--model-option 'oops'"),
        ("s3t", ["--model", "timm:resnet18", "--model-option", "bogus=1"], "bogus"),
    ],
)
def test_bad_model_flags_are_one_line_and_write_nothing(cli, tmp_path, scheme, args, message):
    out = tmp_path / "ens"
    res = CliRunner().invoke(cli, [scheme, "train", "--out", str(out), *args, *TINY])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()
