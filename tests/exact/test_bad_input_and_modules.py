"""Bad input fails clearly before any work; LoRA lands on exactly the intended layers."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from unlearnkit.errors import InternalError, UnlearnkitError
from unlearnkit.exact import S3TConfig, S3TEnsemble, SISAConfig
from unlearnkit.exact.stack import LoRAStack, StackSpec
from unlearnkit.models import create_model
from unlearnkit.models.lora import group_units, inject_lora, lora_layers, lora_units, split_qkv


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"num_slices": 3, "num_sequences": 7}, "L!"),
        ({"num_slices": 2, "deletion_prior": [0.5, 0.6]}, "sums to"),
        ({"num_slices": 2, "deletion_prior": [0.5]}, "one per slice"),
        ({"num_shards": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_config_names_the_problem(kw, match) -> None:
    with pytest.raises(ValidationError, match=match):
        S3TConfig(**kw)
    with pytest.raises(ValidationError, match="extra"):
        SISAConfig(num_sequences=2)


def test_shape_too_large_for_the_data_fails_before_training(small, s3t_config) -> None:
    train, _ = small
    with pytest.raises(UnlearnkitError, match="exceeds the 20 training samples"):
        S3TEnsemble.train(train.subset(torch.arange(20)), s3t_config(num_shards=10))
    with pytest.raises(UnlearnkitError, match="would be empty"):
        S3TEnsemble.train(train.subset(torch.arange(24)), s3t_config(num_shards=8))
    with pytest.raises(UnlearnkitError, match="unknown model"):
        S3TEnsemble.train(train, s3t_config(model="nope"))
    with pytest.raises(UnlearnkitError, match="needs a S3TConfig"):
        S3TEnsemble.train(train, SISAConfig())


def test_divergence_is_reported(small, backbone, s3t_config) -> None:
    train, _ = small
    recipe = {"epochs": 2, "lr": 10.0, "batch_size": 8, "momentum": 0.99}
    with pytest.raises(InternalError, match=r"diverged.*lower train\.lr"):
        S3TEnsemble.train(
            train,
            s3t_config(train=recipe, lora_alpha=1000.0),
            num_classes=10,
            backbone_state=backbone,
        )


@pytest.mark.parametrize("depth", [12, 24])
def test_vit_groups_pick_exact_q_v_layers(depth: int) -> None:
    """L=4 blocks of consecutive transformer blocks, top first, q and v only."""
    model = split_qkv(create_model("vit_tiny", 10, 1, 8, depth=depth))
    groups = group_units(lora_units(model), 4)
    per = depth // 4
    for k, group in enumerate(groups):
        first = depth - (k + 1) * per
        expected = [f"blocks.{i}.attn.qkv.{p}" for i in range(first, first + per) for p in "qv"]
        assert group == expected
    inject_lora(model, "top", groups[0], rank=2)
    inject_lora(model, "one", ["blocks.1.attn.qkv.q"], rank=2)  # must not hit blocks.10-19
    names = {n for n, m in model.named_modules() if m in lora_layers(model) and "one" in m.lora_A}
    assert names == {"blocks.1.attn.qkv.q"}
    top = {n for n, m in model.named_modules() if m in lora_layers(model) and "top" in m.lora_A}
    assert top == set(groups[0])


def test_split_qkv_keeps_the_function() -> None:
    torch.manual_seed(0)
    model = create_model("vit_tiny", 10, 1, 8, depth=2).eval()
    x = torch.randn(3, 1, 8, 8)
    before = model(x)
    assert torch.allclose(split_qkv(model)(x), before, atol=1e-5)


def test_cnn_groups_and_more_blocks_than_layers() -> None:
    model = create_model("smallcnn", 10, 1, 8)
    units = lora_units(model)
    assert units == [["features.0"], ["features.3"], ["features.7"]]
    assert group_units(units, 3) == [["features.7"], ["features.3"], ["features.0"]]
    assert group_units(units, 2) == [["features.7"], ["features.0", "features.3"]]
    four = group_units(units, 4)
    assert four[0] == ["features.7"] and four[-1] == ["features.0"] and len(four) == 4


def test_vit_s3t_trains_and_deletes() -> None:
    """A 4-block ViT, L=2: S3T runs end to end on the q/v LoRA blocks."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 3
    from unlearnkit.data.base import ArraySplit

    data = ArraySplit(x, y, torch.arange(40))
    cfg = S3TConfig(
        model="vit_tiny",
        model_options={"depth": 4},
        num_shards=2,
        num_slices=2,
        num_sequences=2,
        lora_rank=2,
        train={"epochs": 1, "batch_size": 8, "lr": 0.01},
        retrain_policy="manual",
    )
    ens = S3TEnsemble.train(data, cfg, num_classes=3)
    assert ens.stack.groups[0] == [f"blocks.{i}.attn.qkv.{p}" for i in (2, 3) for p in "qv"]
    (r,) = ens.delete([ens.partition.members(0, ens.sequences[0][1])[0]])
    assert r["switched_off"][0]["blocks"] == [1]
    assert ens.predict_logits(x[:5]).shape == (5, 3)


def test_stack_rejects_empty_prefix() -> None:
    spec = StackSpec("smallcnn", 10, 1, 8, {"width": 4}, rank=2)
    state = create_model("smallcnn", 10, 1, 8, width=4).state_dict()
    stack = LoRAStack(spec, state, "s3t", 3, [0], 1)
    with pytest.raises(ValueError, match="at least one stage"):
        stack.prefix(0, 0, 0)
