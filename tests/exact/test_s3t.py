"""S3T and SISA ensembles: isolation, exact deletion, receipts, retraining, policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit.exact.jobs as jobs
import unlearnkit.training as training
from unlearnkit.data import load_dataset
from unlearnkit.errors import ConflictError, NotFoundError
from unlearnkit.exact import ENSEMBLES, S3TEnsemble, SISAEnsemble, load_ensemble
from unlearnkit.exact.stack import StackSpec, block_name
from unlearnkit.exact.store import POINTER
from unlearnkit.training import TrainConfig


def _sample_in(ens, shard: int, slice_: int) -> int:
    return ens.partition.members(shard, slice_)[0]


def _loaded_without(train, x: int):
    """D without ``x`` as a retrain from scratch sees it: loaded afresh with ``x`` never in the
    pool (normalisation included), not ``train`` with a row dropped; ``train`` is the first
    ids of D (conftest's ``small``). A preprocessing constant that depended on D would make
    this differ from ``train.drop_ids([x])``, and the bit-identity checks below would fail."""
    fresh = load_dataset("digits", public_fraction=0.3, leave_out=[x]).train
    fresh = fresh.subset(fresh.ids <= int(train.ids.max()))
    assert torch.equal(fresh.x, train.drop_ids([x]).x)
    return fresh


@pytest.fixture(scope="module")
def trained(small, backbone, s3t_config) -> S3TEnsemble:
    train, _ = small
    return S3TEnsemble.train(train, s3t_config(), num_classes=10, backbone_state=backbone)


def test_isolation_every_other_parameter_is_bit_identical(
    small, backbone, s3t_config, monkeypatch
) -> None:
    """Each stage moves its own block (adapter + head) and nothing else, buffers included;
    the optimizer holds exactly that block's parameters."""
    real_train, real_optimizer = jobs.train_block, training.make_optimizer
    checked, optimized = [], []

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
    train, _ = small
    S3TEnsemble.train(train, s3t_config(), num_classes=10, backbone_state=backbone)
    assert len(checked) == 2 * 2 * 3


def test_blocks_see_exactly_their_cumulative_slices(trained) -> None:
    """Block k of a sequence trains on slices order[0..k]; the prefix shapes follow."""
    stack = trained.stack
    adapters, head = stack.prefix(1, 1, 2)
    assert adapters == [block_name(1, 1, 0), block_name(1, 1, 1)] and head == block_name(1, 1, 1)
    data = trained._shard_data(1)
    order = trained.sequences[1]
    part = jobs.stage_data(
        data, {i: trained.partition.owner[i][1] for i in data.ids.tolist()}, order, 1
    )
    expected = sorted(
        trained.partition.members(1, order[0]) + trained.partition.members(1, order[1])
    )
    assert sorted(part.ids.tolist()) == expected
    # the top block adapts the layers nearest the head
    assert stack.groups[0] == ["features.7"] and stack.groups[-1] == ["features.0"]


def test_delete_switches_off_exactly_the_affected_blocks(small, backbone, s3t_config) -> None:
    train, _ = small
    ens = S3TEnsemble.train(
        train, s3t_config(num_sequences=3), num_classes=10, backbone_state=backbone
    )
    before = ens.stack.block_state(
        [block_name(s, b, k) for s in range(2) for b in range(3) for k in range(3)]
    )
    x = _sample_in(ens, 1, 2)
    (receipt,) = ens.delete([x])
    assert receipt["shard"] == 1 and receipt["slice"] == 2 and receipt["version"] == 1
    expected = {}
    for b, order in enumerate(ens.sequences):
        pos = order.index(2)
        expected[b] = list(range(pos, 3))
    got = {s["sequence"]: s["blocks"] for s in receipt["switched_off"]}
    assert got == expected
    assert receipt["switched_off"][0]["adapters"] == [block_name(1, 0, k) for k in expected[0]]
    alive = np.ones((2, 3, 3), dtype=bool)
    for b, blocks in expected.items():
        alive[1, b, blocks] = False
    assert (ens.alive == alive).all()
    # nothing retrained: every weight is what training left
    after = ens.stack.block_state(
        list({block_name(s, b, k) for s in range(2) for b in range(3) for k in range(3)})
    )
    assert all(torch.equal(before[k], after[k]) for k in before)
    # shard 1 serves its longest surviving prefix
    lengths = ens.prefix_lengths()[1]
    assert receipt["served"] == {"sequence": int(lengths.argmax()), "prefix": int(lengths.max())}
    assert ens.serving_plan()[0] == (0, 3)


@pytest.mark.parametrize("where", ["middle", "first"])
def test_s3t_deletion_is_exact(small, backbone, s3t_config, trained, where) -> None:
    """After deleting x the served logits equal, bit for bit, the same procedure run on D \\ x
    served with the same prefixes; after retraining, equal the full D \\ x ensemble."""
    train, test = small
    ens = trained.clone()  # a private copy
    seq0 = ens.sequences[0]
    x = _sample_in(ens, 0, seq0[1] if where == "middle" else seq0[0])
    full_before = ens.predict_logits(test.x)
    ens.delete([x])
    plan = ens.serving_plan()
    served = ens.predict_logits(test.x)
    ref = S3TEnsemble.train(
        _loaded_without(train, x), s3t_config(), num_classes=10, backbone_state=backbone
    )
    assert torch.equal(served, ref.predict_logits(test.x, plan=plan))
    # the check has teeth: the full ensemble on D and the full one on D \ x differ
    assert not torch.equal(full_before, ref.predict_logits(test.x))
    ens.retrain_shard(0)
    assert ens.alive.all() and ens.retrains_done == 1
    assert torch.equal(ens.predict_logits(test.x), ref.predict_logits(test.x))


def test_sisa_eager_deletion_is_exact(small, backbone, sisa_config) -> None:
    """SISA retrains the shard from checkpoint p-1: the result equals training on D \\ x."""
    train, test = small
    ens = SISAEnsemble.train(train, sisa_config(), num_classes=10, backbone_state=backbone)
    x = _sample_in(ens, 1, 1)
    kept = ens.stack.block_state([block_name(1, 0, 0)])
    (receipt,) = ens.delete([x])
    assert receipt["switched_off"] == [
        {"sequence": 0, "blocks": [1, 2], "adapters": [block_name(1, 0, 1), block_name(1, 0, 2)]}
    ]
    assert receipt["retrained_shards"] == [1] and ens.alive.all()
    after = ens.stack.block_state([block_name(1, 0, 0)])
    assert all(torch.equal(kept[k], after[k]) for k in kept)  # checkpoint p-1 reused
    ref = SISAEnsemble.train(
        _loaded_without(train, x), sisa_config(), num_classes=10, backbone_state=backbone
    )
    assert torch.equal(ens.predict_logits(test.x), ref.predict_logits(test.x))


def test_sisa_vote_and_prefix_serving(small, backbone, sisa_config) -> None:
    train, test = small
    ens = SISAEnsemble.train(
        train,
        sisa_config(retrain_policy="manual", aggregation="vote"),
        num_classes=10,
        backbone_state=backbone,
    )
    votes = ens.predict_logits(test.x)
    assert torch.allclose(votes.sum(1), torch.ones(len(test)))  # shares of 2 shards
    assert set((votes * 2).unique().tolist()) <= {0.0, 1.0, 2.0}
    ens.delete([_sample_in(ens, 0, 2)])
    assert ens.serving_plan() == {0: (0, 2), 1: (0, 3)}  # checkpoint after slice 1
    ens.delete([_sample_in(ens, 0, 0)])
    assert ens.dead_shards() == [0] and ens.serving_plan() == {1: (0, 3)}


def test_already_deleted_is_idempotent_and_unknown_changes_nothing(trained) -> None:
    ens = trained.clone()
    x = _sample_in(ens, 0, 0)
    first = ens.delete([x])
    alive, version = ens.alive.copy(), ens.version
    assert ens.delete([x, x]) == first * 2
    assert ens.version == version and (ens.alive == alive).all()
    deleted = set(ens.partition.deleted)
    y = _sample_in(ens, 1, 0)
    with pytest.raises(NotFoundError, match="99999"):
        ens.delete([y, 99999])
    assert ens.partition.deleted == deleted and (ens.alive == alive).all()
    assert ens.version == version and y not in ens.receipts


def test_dead_shard_policy_retrains_only_dead_shards(small, backbone, s3t_config) -> None:
    train, _ = small
    ens = S3TEnsemble.train(
        train,
        s3t_config(num_sequences=1, retrain_policy="dead_shard"),
        num_classes=10,
        backbone_state=backbone,
    )
    order = ens.sequences[0]
    (r,) = ens.delete([_sample_in(ens, 0, order[1])])
    assert r["retrained_shards"] == [] and ens.retrains_done == 0
    (r,) = ens.delete([_sample_in(ens, 1, order[0])])  # shard 1 now serves nothing
    assert r["retrained_shards"] == [1] and ens.retrains_done == 1
    assert ens.alive[1].all() and not ens.alive[0].all()
    assert ens.status(simulate=False)["retrains_pending"] == [0]


def test_every_shard_dead_refuses_to_predict(small, backbone, s3t_config) -> None:
    train, test = small
    ens = S3TEnsemble.train(
        train, s3t_config(num_shards=1, num_sequences=1), num_classes=10, backbone_state=backbone
    )
    ens.delete([_sample_in(ens, 0, ens.sequences[0][0])])
    with pytest.raises(ConflictError, match="every shard is dead"):
        ens.predict_logits(test.x)
    assert ens.status()["remaining_capacity_theory"] == 0.0


def test_a_slice_deleted_whole_leaves_its_sequences_off_and_the_rest_retrains(trained) -> None:
    ens = trained.clone()
    first = {b: order[0] for b, order in enumerate(ens.sequences)}
    gone = first[0]  # the first slice of sequence 0 (not of sequence 1)
    assert first[1] != gone
    ens.delete(ens.partition.members(0, gone))  # shard 0 loses that slice whole
    stages = ens.retrainable_stages(0)
    assert stages and all(b != 0 for b, _ in stages)  # sequence 0 has nothing to start from
    ens.retrain_shard(0)  # used to fail: the first block trained on no data (loss nan)
    assert not ens.alive[0, 0].any() and ens.alive[0, 1].all()
    assert ens.serving_plan()[0][0] == 1
    assert torch.isfinite(ens.predict_logits(ens.data.x[:4])).all()
    ens.delete(ens.partition.members(0))  # now nothing is left in shard 0
    assert ens.retrainable_stages(0) == [] and 0 in ens.dead_shards()
    ens.retrain_shard(0)  # nothing to train: the shard stays dead, nothing fails
    assert 0 in ens.dead_shards()


def test_stale_retrain_ticket_is_refused(trained) -> None:
    ens = trained.clone()
    ens.delete([_sample_in(ens, 0, 0)])
    ticket = ens.prepare_retrain(0)
    ens.delete([_sample_in(ens, 0, 1)])
    with pytest.raises(ConflictError, match="prepare it again"):
        ens.commit_retrain(ticket)
    with pytest.raises(NotFoundError, match="shard 7"):
        ens.prepare_retrain(7)


def test_status_tracks_capacity(trained) -> None:
    ens = trained.clone()
    st = ens.status()
    assert st["capacity_total_theory"] == pytest.approx(2 * 3 * (1 + 1 / 2 + 1 / 3 + 1 / 4))
    assert st["remaining_capacity_theory"] == pytest.approx(st["capacity_total_theory"])
    ens.delete([_sample_in(ens, 0, ens.sequences[0][0])])
    st2 = ens.status()
    assert st2["remaining_capacity_theory"] == pytest.approx(2 * 3 * (1 + 1 / 2 + 1 / 3))
    assert abs(st2["remaining_capacity_simulated"] - st2["remaining_capacity_theory"]) < 2.0


@pytest.mark.parametrize("scheme", ["s3t", "sisa"])
def test_first_stage_heads_start_from_the_backbone_head(
    small, backbone, s3t_config, sisa_config, scheme
) -> None:
    """head_init="backbone": with no training steps every served prefix is the backbone itself
    (its LoRA is zero, its head the backbone's); "random" starts elsewhere."""
    from unlearnkit.exact.stack import build_backbone

    train, test = small
    make = s3t_config if scheme == "s3t" else sisa_config
    untrained = TrainConfig(epochs=0, lr=0.01, batch_size=16)
    ens = ENSEMBLES.get(scheme).train(
        train, make(train=untrained), num_classes=10, backbone_state=backbone
    )
    net, head = build_backbone(StackSpec("smallcnn", 10, 1, 8, {"width": 8}), backbone)
    with torch.no_grad():
        expected = head(net.eval()(test.x))
    assert torch.allclose(ens.predict_logits(test.x), expected, atol=1e-5)
    rand = ENSEMBLES.get(scheme).train(
        train, make(train=untrained, head_init="random"), num_classes=10, backbone_state=backbone
    )
    assert not torch.allclose(rand.predict_logits(test.x), expected, atol=1e-3)


def test_ensembles_saved_before_head_init_load_as_random(trained, tmp_path) -> None:
    import json

    root = tmp_path / "ens"
    trained.save(root)
    record = root / (root / POINTER).read_text().strip()
    data = json.loads(record.read_text())
    assert data["config"].pop("head_init") == "backbone"
    record.write_text(json.dumps(data))
    assert load_ensemble(root).config.head_init == "random"
