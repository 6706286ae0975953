"""Checkpoints as other code writes them: containers, DDP / torch.compile prefixes, safetensors,
a new label set, an RGB first conv into a grey-scale model; and each misfit in one line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.models.checkpoint import load_checkpoint


def tv_resnet(classes: int = 10, chans: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return create_model("torchvision:resnet18", classes, chans, 32)


def same(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not any(k.startswith(s) for s in skip))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s, "epoch": 3, "arch": "resnet18"},
        lambda s: {"model": s, "optimizer": {"lr": 0.1}},
        lambda s: {"model_ema": s},
        lambda s: {f"module.{k}": v for k, v in s.items()},  # DDP
        lambda s: {f"_orig_mod.{k}": v for k, v in s.items()},  # torch.compile
        lambda s: {"state_dict": {f"module._orig_mod.{k}": v for k, v in s.items()}},
    ],
    ids=["plain", "state_dict", "model", "model_ema", "ddp", "compile", "nested"],
)
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_containers_and_prefixes_are_unwrapped(tmp_path, wrap, suffix):
    source = tv_resnet(seed=1)
    path = tmp_path / f"w{suffix}"
    torch.save(wrap(source.state_dict()), path)
    target = tv_resnet(seed=2)
    assert not same(source, target)
    load_checkpoint(path, target)
    assert same(source, target)


def test_safetensors_with_ddp_prefixes(tmp_path):
    source = tv_resnet(seed=1)
    state = {f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    target = create_model("torchvision:resnet18", 10, 3, 32, weights=tmp_path / "w.safetensors")
    assert same(source, target)


def test_new_label_set_needs_skip_head_and_gets_one_line_otherwise(tmp_path):
    torch.manual_seed(1)
    imagenet = create_model("torchvision:resnet18", 1000, 3, 32)
    torch.save(imagenet.state_dict(), tmp_path / "in1k.pth")
    with pytest.raises(UnlearnkitError) as err:
        create_model("torchvision:resnet18", 10, 3, 32, weights=tmp_path / "in1k.pth")
    message = str(err.value)
    assert "\n" not in message
    assert "fc.weight 1000x512 vs 10x512" in message and "fc.bias 1000 vs 10" in message
    assert "--weights-skip-head" in message
    torch.manual_seed(5)
    model = create_model(
        "torchvision:resnet18", 10, 3, 32, weights=tmp_path / "in1k.pth", weights_skip_head=True
    )
    assert same(imagenet, model, skip=("fc.",))
    assert model.fc.out_features == 10


def test_rgb_first_conv_folds_into_a_grey_model(tmp_path):
    source = tv_resnet(chans=3, seed=1)
    torch.save(source.state_dict(), tmp_path / "rgb.pt")
    grey = tv_resnet(chans=1, seed=2)
    load_checkpoint(tmp_path / "rgb.pt", grey)
    torch.testing.assert_close(grey.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert same(source, grey, skip=("conv1.",))


def test_mismatch_names_the_first_few_keys(tmp_path):
    timm_state = create_model("timm:resnet18", 10, 3, 32).state_dict()
    torch.save({f"backbone.{k}": v for k, v in timm_state.items()}, tmp_path / "other.pt")
    model = tv_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnlearnkitError) as err:
        load_checkpoint(tmp_path / "other.pt", model)
    message = str(err.value)
    assert message.startswith(f"checkpoint {tmp_path / 'other.pt'} does not fit this model: ")
    assert "missing conv1.weight, bn1.weight, bn1.bias (+" in message
    assert "unexpected backbone.conv1.weight" in message and "\n" not in message
    assert same_state(before, model.state_dict())  # untouched


def same_state(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_a_pickled_model_is_refused_in_one_line(tmp_path):
    torch.save(tv_resnet(), tmp_path / "whole.pt")
    with pytest.raises(UnlearnkitError) as err:
        load_checkpoint(tmp_path / "whole.pt", tv_resnet())
    assert "pickled Python objects" in str(err.value) and "state_dict()" in str(err.value)
    assert "\n" not in str(err.value)


def test_garbage_and_non_weight_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00not a torch file")
    with pytest.raises(UnlearnkitError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / "junk.pth", tv_resnet())
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, tmp_path / "meta.pt")
    with pytest.raises(UnlearnkitError, match=r"holds no state dict .*epoch, config"):
        load_checkpoint(tmp_path / "meta.pt", tv_resnet())
