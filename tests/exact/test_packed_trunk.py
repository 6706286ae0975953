"""The shared trunk and the packed pass (issue 26 items 1-2): ``adapt`` chooses the adapted top,
the frozen rest runs once, and the packed pass equals the per-shard loop at every deletion state.

Ensembles here are built without training (the internal constructor) and given random adapters
and heads, so every block's contribution is large and distinct: the comparison is sharp and
fast. Architectures: smallcnn (8x8 and its pooled 28x28 layout) and a real timm ResNet
(``timm:resnet18`` narrowed to one BasicBlock per stage) at 16x16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact import S3TConfig, S3TEnsemble, SISAConfig, SISAEnsemble
from unlearnkit.exact.backbone import random_backbone
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.stack import StackSpec, check_blocks

RESNET = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8}
# (model, in_chans, image size, options, adapt)
SETUPS = {
    "smallcnn-all": ("smallcnn", 1, 8, {"width": 8}, None),
    "smallcnn28-last3": ("smallcnn", 1, 28, {"width": 4}, 3),
    "resnet-layer4": ("timm:resnet18", 3, 16, RESNET, "layer4.*"),
    "resnet-all": ("timm:resnet18", 3, 16, RESNET, None),
    # attention under vmap: the fused CPU kernel has no batching rule, the math one does
    "vit-all": ("vit_tiny", 1, 8, {"depth": 6}, None),
}


def _ensemble(kind: str, setup: str, shards: int = 3, seed: int = 0, **kw):
    """An untrained ensemble with random (nonzero) adapters and heads; 8 samples per slice."""
    model, chans, size, options, adapt = SETUPS[setup]
    cls, cfg_type = (S3TEnsemble, S3TConfig) if kind == "s3t" else (SISAEnsemble, SISAConfig)
    extra = {"num_sequences": 2} if kind == "s3t" else {}
    config = cfg_type(
        model=model,
        model_options=options,
        num_shards=shards,
        num_slices=3,
        lora_rank=2,
        adapt=adapt,
        retrain_policy="manual",
        **extra,
        **kw,
    )
    n = shards * 3 * 8
    gen = torch.Generator().manual_seed(seed)
    data = ArraySplit(
        torch.randn(n, chans, size, size, generator=gen),
        torch.randint(0, 10, (n,), generator=gen),
        torch.arange(n),
    )
    spec = StackSpec(model, 10, chans, size, options, 2, 16.0, (), ("linear", "conv2d"), adapt)
    backbone = random_backbone(spec, seed)
    partition = Partition.create(data.ids, shards, 3, seed)
    ens = cls(config, spec, backbone, partition, cls._sequences(config), data)
    with torch.no_grad():  # a trained block's size: B A small beside W, heads of order one
        for name, p in ens.stack.named_parameters():
            scale = 0.02 if ".lora_B." in name else 0.3
            if ".lora_" in name or name.startswith("heads."):
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return ens


def _agree(ens, x: torch.Tensor) -> None:
    loop = ens.predict_logits(x, packed=False)
    packed = ens.predict_logits(x)
    assert loop.abs().max() > 0.1  # logits of a real size: the tolerance is not vacuous
    torch.testing.assert_close(packed, loop, rtol=0, atol=1e-5)


def _kill_shard(ens, shard: int) -> None:
    """Delete one sample of every slice of ``shard``: every sequence loses its first block."""
    by_slice: dict[int, int] = {}
    for i in ens.partition.members(shard):
        by_slice.setdefault(ens.partition.owner[i][1], i)
    ens.delete(by_slice.values())


@pytest.mark.parametrize("kind", ["s3t", "sisa"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_packed_pass_equals_the_loop_at_every_deletion_state(kind, setup):
    ens = _ensemble(kind, setup)
    x = ens.data.x[:6].clone()
    _agree(ens, x)  # nothing deleted
    ids = ens.data.ids.tolist()
    rng = np.random.default_rng(0)
    ens.delete(rng.choice(ids, 3, replace=False).tolist())  # some
    _agree(ens, x)
    _kill_shard(ens, 0)
    assert 0 not in ens.serving_plan() and ens.serving_plan()  # a shard with no live block
    _agree(ens, x)
    live = sorted(set(ids) - ens.partition.deleted - set(ens.partition.members(0)))
    ens.delete(rng.choice(live, len(live) // 3, replace=False).tolist())  # many
    if ens.serving_plan():
        _agree(ens, x)
    prefixes = {p for _, p in ens.serving_plan().values()}
    assert ens.scheme == "sisa" or len(ens.blocks.alive.ravel()) > ens.blocks.alive.sum(), prefixes


def test_sisa_vote_packed_equals_loop():
    ens = _ensemble("sisa", "smallcnn-all", aggregation="vote")
    x = ens.data.x[:10].clone()
    _agree(ens, x)
    _kill_shard(ens, 1)
    _agree(ens, x)


def test_trunk_runs_once_per_input_and_holds_no_adapted_layer():
    ens = _ensemble("s3t", "resnet-layer4", shards=4)
    x = ens.data.x[:5].clone()
    split = ens.packer.network.split
    assert split.traced
    trunk_modules = {n for n, _ in split.trunk.named_modules()}
    adapted = {n for g in ens.stack.groups for n in g}
    assert adapted and not adapted & trunk_modules
    assert all(n.startswith("layer4.") for n in adapted)
    calls = []
    stem = dict(split.trunk.named_modules())["conv1"]
    handle = stem.register_forward_hook(lambda *_: calls.append(1))
    try:
        ens.predict_logits(x)
    finally:
        handle.remove()
    assert len(calls) == 1  # once for 4 shards; the loop runs the stem per shard
    loop_calls = []
    handle = ens.stack.backbone.conv1.register_forward_hook(lambda *_: loop_calls.append(1))
    try:
        ens.predict_logits(x, packed=False)
    finally:
        handle.remove()
    assert len(loop_calls) == 4


def test_adapt_last_k_and_pattern_choose_the_top_layers():
    k3 = _ensemble("s3t", "smallcnn28-last3", shards=2)
    names = [n for g in reversed(k3.stack.groups) for n in g]  # groups run top first
    convs = [n for n, m in k3.spec.build().named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and names == convs[1:]  # the last three: not the first conv
    assert len(k3.stack.groups) == 3 and len(set(names)) == 3  # disjoint, one per stage
    r = _ensemble("sisa", "resnet-layer4", shards=2)
    assert {n for g in r.stack.groups for n in g} == {
        "layer4.0.conv1",
        "layer4.0.conv2",
        "layer4.0.downsample.0",
    }


def test_adapt_mistakes_are_one_line_errors():
    with pytest.raises(ValueError, match="adapt"):
        S3TConfig(adapt=0)
    with pytest.raises(ValueError, match="adapt"):
        S3TConfig(adapt=True)
    spec = StackSpec("smallcnn", 10, 1, 28, {"width": 4}, adapt=2)
    with pytest.raises(UnlearnkitError, match="disjoint"):
        check_blocks(spec, "s3t", 3)  # S3T's stages cannot share 2 layers among 3
    check_blocks(spec, "sisa", 3)  # SISA adapts all of them at every stage: fine
    with pytest.raises(UnlearnkitError, match=r"adaptable layers; choose 1\.\.4"):
        check_blocks(StackSpec("smallcnn", 10, 1, 28, {"width": 4}, adapt=9), "sisa", 3)
    with pytest.raises(UnlearnkitError, match="matches no adaptable layer"):
        check_blocks(StackSpec("smallcnn", 10, 1, 28, {"width": 4}, adapt="layer9.*"), "sisa", 3)


def test_adapt_is_saved_and_reloaded(tmp_path):
    ens = _ensemble("s3t", "resnet-layer4", shards=2)
    ens.save(tmp_path / "e")
    back = S3TEnsemble.load(tmp_path / "e")
    assert back.spec.adapt == "layer4.*" and back.config.adapt == "layer4.*"
    x = ens.data.x[:4].clone()
    torch.testing.assert_close(back.predict_logits(x), ens.predict_logits(x), rtol=0, atol=1e-6)
    assert StackSpec.from_dict({**ens.spec.to_dict(), "adapt": 2}).adapt == 2
    old = ens.spec.to_dict()
    old.pop("adapt")  # a stack saved before adapt existed adapts every layer
    assert StackSpec.from_dict(old).adapt is None


def test_a_view_is_immutable_and_a_deletion_re_merges_only_its_shard():
    ens = _ensemble("s3t", "smallcnn-all", shards=3)
    x = ens.data.x[:4].clone()
    before = ens.packed_view()
    old = before.logits(x)
    kept = {s: ens.packer._cache[s][1] for s in (1, 2)}
    shard0 = ens.partition.members(0)[0]
    ens.delete([shard0])
    after = ens.packed_view()
    torch.testing.assert_close(before.logits(x), old, rtol=0, atol=0)  # the old version stays
    assert not torch.equal(after.logits(x), old)
    for s in (1, 2):
        assert ens.packer._cache[s][1] is kept[s]  # untouched shards reuse their merge
    seq, length = ens.serving_plan()[1]
    adapters, head = ens.stack.prefix(1, seq, length)
    with torch.no_grad():  # weights written in place (a retrain) invalidate that shard's merge
        ens.stack.heads[head].bias.add_(1.0)
        ens.stack.load_blocks(
            {
                n: torch.zeros_like(t)
                for n, t in ens.stack.block_state(adapters[-1:]).items()
                if "lora_B" in n
            }
        )
    _agree(ens, x)  # a stale merge would differ by the head's +1
    assert ens.packer._cache[1][1] is not kept[1]
    clone = ens.clone()
    torch.testing.assert_close(clone.predict_logits(x), ens.predict_logits(x), rtol=0, atol=0)


def test_cli_adapt_is_recorded_and_predict_packed_equals_loop(tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from unlearnkit.cli.exact import mount
    from unlearnkit.exact import load_ensemble

    app = typer.Typer()
    app.command("noop")(lambda: None)  # a group needs >1 command to keep sub-command names
    mount(app)
    fast = ["--no-pretrain", "--shards", "2", "--slices", "2", "--epochs", "1", "--rank", "4"]
    out, runner = tmp_path / "e", CliRunner()
    res = runner.invoke(app, ["s3t", "train", "--out", str(out), "--adapt", "2", *fast])
    assert res.exit_code == 0, res.output
    ens = load_ensemble(out)
    assert ens.config.adapt == 2 and sum(len(g) for g in ens.stack.groups) == 2
    got = [
        json.loads(runner.invoke(app, ["s3t", "predict", "--from", str(out), *flag]).stdout)
        for flag in ([], ["--loop"])
    ]
    assert got[0] == got[1] and got[0]["samples"] > 0  # same accuracy, packed or loop
    bad = runner.invoke(app, ["sisa", "train", "--out", str(tmp_path / "b"), "--adapt", "x.*"])
    assert bad.exit_code == 2 and "adapt" in bad.output and not (tmp_path / "b").exists()


def test_packed_pass_in_several_chunks_equals_one():
    ens = _ensemble("s3t", "resnet-layer4", shards=3)
    x = ens.data.x[:20].clone()
    whole = ens.predict_logits(x)
    chunked = ens.predict_logits(x, batch_size=16)  # 16 / 3 shards -> chunks of 8 rows
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked, ens.predict_logits(x, packed=False), rtol=0, atol=1e-5)


def test_a_clone_shares_the_read_only_data_and_owns_what_a_deletion_changes():
    ens = _ensemble("s3t", "smallcnn-all")
    twin = ens.clone()
    assert twin.data is ens.data and twin.partition.owner is ens.partition.owner
    gone = int(ens.data.ids[0])
    twin.delete([gone])
    assert gone in twin.partition.deleted and gone not in ens.partition.deleted
    assert ens.blocks.alive.all() and not twin.blocks.alive.all()
    x = ens.data.x[:4].clone()
    assert not torch.equal(twin.predict_logits(x), ens.predict_logits(x))


def test_a_frozen_save_writes_the_state_it_captured_not_a_later_one(tmp_path):
    from unlearnkit.exact import load_ensemble

    ens = _ensemble("s3t", "smallcnn-all")
    first, second = (int(i) for i in ens.data.ids[:2])
    ens.delete([first])
    write = ens.frozen_save()  # what a service snapshot captures under its lock
    version = ens.version
    ens.delete([second])  # the model goes on changing before the snapshot thread writes
    write(tmp_path / "snap")
    back = load_ensemble(tmp_path / "snap")
    assert back.version == version and back.partition.deleted == {first}
    assert second in back.partition.owner  # still a live sample of the saved state
    x = ens.data.x[:4].clone()
    ens.save(tmp_path / "now")
    assert load_ensemble(tmp_path / "now").partition.deleted == {first, second}
    assert back.predict_logits(x).shape == (4, 10)
