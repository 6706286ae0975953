"""S3T's LoRA targets on real architectures: Linear and Conv2d chosen by type and whole-name
pattern, grouped / depthwise convs skipped; train -> delete -> predict on timm EfficientNet-B0
and torchvision MobileNet-V3-Small at 32 px, with the isolation contract checked on both."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from unlearnkit import training
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact import S3TConfig, S3TEnsemble, jobs
from unlearnkit.exact.stack import LoRAStack, StackSpec, block_name, check_blocks
from unlearnkit.models.lora import adaptable_layers, inject_lora, lora_units, split_qkv
from unlearnkit.models.registry import MODELS

CLASSES = 3


# Built straight from the libraries that define them (the `timm:NAME` / `torchvision:NAME`
# naming of the CLI is another change); registered so workers and the stack can rebuild them.
@MODELS.register("test_timm_efficientnet_b0")
def _efficientnet_b0(num_classes: int, in_chans: int, image_size: int) -> nn.Module:
    return timm.create_model(
        "efficientnet_b0", pretrained=False, num_classes=num_classes, in_chans=in_chans
    )


@MODELS.register("test_tv_mobilenet_v3_small")
def _mobilenet_v3_small(num_classes: int, in_chans: int, image_size: int) -> nn.Module:
    model = torchvision.models.get_model("mobilenet_v3_small", num_classes=num_classes)
    model.get_classifier = lambda: model.classifier[3]  # until the shared head finder lands
    return model


MODELS_UNDER_TEST = ["test_timm_efficientnet_b0", "test_tv_mobilenet_v3_small"]


def _build(name: str) -> nn.Module:
    return split_qkv(MODELS.get(name)(num_classes=CLASSES, in_chans=3, image_size=32))


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_default_targets_are_linear_and_dense_convs_never_grouped_nor_the_head(name):
    model = _build(name)
    modules = dict(model.named_modules())
    targets = [n for unit in lora_units(model) for n in unit]
    _, skipped = adaptable_layers(model)
    assert skipped and all(modules[n].groups > 1 for n in skipped)  # depthwise convs exist
    assert all(isinstance(modules[n], nn.Linear | nn.Conv2d) for n in targets)
    assert all(getattr(modules[n], "groups", 1) == 1 for n in targets)
    assert modules[targets[-1]] is not model.get_classifier()
    head = {id(model.get_classifier())}
    dense = [
        n
        for n, m in modules.items()
        if isinstance(m, nn.Linear | nn.Conv2d) and getattr(m, "groups", 1) == 1
    ]
    assert targets == [n for n in dense if id(modules[n]) not in head]  # all of them, in order
    if name == "test_tv_mobilenet_v3_small":  # the classifier's hidden Linear is adapted too
        assert "classifier.0" in targets


@pytest.mark.filterwarnings("ignore:LoRA adapter added to ConvNd layer with groups > 1")
def test_rank_16_stack_builds_on_efficientnet_whose_depthwise_convs_peft_refuses():
    """peft refuses rank 16 on a conv with groups = 672 (an EfficientNet-B0 depthwise conv):
    skipped, the rank-16 stack builds and runs."""
    spec = StackSpec("test_timm_efficientnet_b0", CLASSES, 3, 32, rank=16)
    state = MODELS.get(spec.name)(num_classes=CLASSES, in_chans=3, image_size=32).state_dict()
    bare = _build(spec.name)
    depthwise = next(n for n, m in bare.named_modules() if getattr(m, "groups", 1) == 672)
    with pytest.raises(ValueError, match="groups=672 and rank 16"):  # what skipping avoids
        inject_lora(bare, "a", [depthwise], rank=16)
    stack = LoRAStack(spec, state, "s3t", 2, [0], 1)
    adapters, head = stack.prefix(0, 0, 2)
    assert stack(torch.randn(2, 3, 32, 32), adapters, head).shape == (2, CLASSES)


def test_patterns_match_whole_names_and_a_pattern_on_nothing_is_one_line():
    model = _build("test_timm_efficientnet_b0")
    units = lora_units(model, ["conv_head", "blocks.6.*"])
    names = [n for u in units for n in u]
    assert names[-1] == "conv_head" and all(n.startswith("blocks.6.") for n in names[:-1])
    assert "blocks.6.0.conv_dw" not in names  # depthwise, skipped even when a pattern matches
    with pytest.raises(UnlearnkitError, match="'conv_pw' matches no layer; adaptable layers"):
        lora_units(model, ["conv_pw"])  # a bare name is not a substring match
    with pytest.raises(UnlearnkitError, match="only grouped / depthwise convs"):
        lora_units(model, ["blocks.*.conv_dw"])
    with pytest.raises(UnlearnkitError, match="no Linear layer"):
        lora_units(model, (), ["linear"])  # EfficientNet's only Linear is its head
    with pytest.raises(UnlearnkitError, match="unknown LoRA layer type 'conv3d'"):
        lora_units(model, (), ["conv3d"])
    spec = StackSpec("test_timm_efficientnet_b0", CLASSES, 3, 32, lora_targets=("nothing.*",))
    with pytest.raises(UnlearnkitError, match=r"'nothing\.\*' matches no layer"):
        check_blocks(spec, "s3t", 2)
    assert StackSpec.from_dict(spec.to_dict()) == spec


def _data(n: int = 24, seed: int = 0) -> ArraySplit:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    return ArraySplit(x, torch.arange(n) % CLASSES, torch.arange(n))


def _config(name: str, **kw: object) -> S3TConfig:
    base = dict(
        model=name,
        num_shards=1,
        num_slices=2,
        num_sequences=2,
        lora_rank=2,
        train={"epochs": 1, "batch_size": 8, "lr": 0.01},
        retrain_policy="manual",
    )
    return S3TConfig(**{**base, **kw})


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_s3t_train_delete_predict_keeps_blocks_isolated(name, monkeypatch):
    """Every stage moves only its own block (adapter + head; buffers included) and the optimizer
    holds exactly that block; a deletion switches off exactly the blocks that saw the sample and
    leaves every parameter bit-identical; predictions keep working from the surviving prefix."""
    torch.set_num_threads(1)
    real_train, real_optimizer = jobs.train_block, training.make_optimizer
    optimized, checked = [], []

    def spy_optimizer(model, names, cfg):
        optimized.append(sorted(names))
        return real_optimizer(model, names, cfg)

    def spy_train(stack, shard, seq, stage, data, cfg, seed, head_init):
        before = {k: v.clone() for k, v in stack.state_dict().items()}
        real_train(stack, shard, seq, stage, data, cfg, seed, head_init)
        own = set(stack.block_parameter_names(block_name(shard, seq, stage)))
        assert optimized[-1] == sorted(own)
        after = stack.state_dict()
        moved = {k for k in before if not torch.equal(before[k], after[k])}
        assert moved <= own, f"stage {shard}/{seq}/{stage} moved {sorted(moved - own)}"
        assert any(".lora_B." in k for k in moved), "the block's own adapter did not train"
        checked.append((shard, seq, stage))

    monkeypatch.setattr(jobs, "train_block", spy_train)
    monkeypatch.setattr(training, "make_optimizer", spy_optimizer)
    data = _data()
    ens = S3TEnsemble.train(data, _config(name), num_classes=CLASSES)
    assert len(checked) == 2 * 2
    targets = {n for g in ens.stack.groups for n in g}
    modules = dict(ens.stack.backbone.named_modules())
    assert targets and all(getattr(modules[n].base_layer, "groups", 1) == 1 for n in targets)

    x = data.x[:5]
    before_logits = ens.predict_logits(x)
    before = {k: v.clone() for k, v in ens.stack.state_dict().items()}
    seq0 = ens.sequences[0]
    victim = ens.partition.members(0, seq0[1])[0]  # in the second slice of sequence 0
    (receipt,) = ens.delete([victim])
    off = {(s["sequence"], tuple(s["blocks"])) for s in receipt["switched_off"]}
    assert off == {(b, tuple(range(o.index(seq0[1]), 2))) for b, o in enumerate(ens.sequences)}
    after = ens.stack.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # deactivated, not touched
    assert ens.serving_plan() == {0: (0, 1)}  # sequence 0 keeps its first block
    logits = ens.predict_logits(x)
    assert logits.shape == (5, CLASSES) and torch.isfinite(logits).all()
    assert not torch.equal(logits, before_logits)  # the served prefix changed


def test_s3t_deletion_on_mobilenet_is_exact():
    """After deleting x the served logits equal, bit for bit, the same procedure run on D \\ x
    served with the same prefixes (torchvision MobileNet-V3-Small, LoRA on Linear + Conv2d)."""
    torch.set_num_threads(1)
    data = _data()
    config = _config("test_tv_mobilenet_v3_small")
    ens = S3TEnsemble.train(data, config, num_classes=CLASSES)
    full_before = ens.predict_logits(data.x[:6])
    victim = ens.partition.members(0, ens.sequences[0][1])[0]
    ens.delete([victim])
    plan = ens.serving_plan()
    ref = S3TEnsemble.train(data.drop_ids([victim]), config, num_classes=CLASSES)
    assert torch.equal(ens.predict_logits(data.x[:6]), ref.predict_logits(data.x[:6], plan=plan))
    assert not torch.equal(full_before, ref.predict_logits(data.x[:6]))  # the check has teeth
