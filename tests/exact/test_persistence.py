"""Saved ensembles: round trip, atomic saves, corrupt files, bad input leaves state alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import unlearnkit.exact.store as store
from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact import S3TEnsemble, SISAEnsemble, load_ensemble


@pytest.fixture(scope="module")
def ensemble(small, backbone, s3t_config) -> S3TEnsemble:
    train, _ = small
    return S3TEnsemble.train(
        train, s3t_config(), num_classes=10, backbone_state=backbone, meta={"dataset": "digits"}
    )


def test_round_trip_keeps_predictions_blocks_and_receipts(ensemble, small, tmp_path) -> None:
    _, test = small
    ens = ensemble.clone()
    x = ens.partition.members(1, 1)[0]
    receipts = ens.delete([x])
    ens.save(tmp_path)
    back = load_ensemble(tmp_path)
    assert isinstance(back, S3TEnsemble)
    assert torch.equal(back.predict_logits(test.x), ens.predict_logits(test.x))
    assert (back.alive == ens.alive).all() and back.version == ens.version == 1
    assert back.delete([x]) == receipts  # idempotent across a reload
    assert back.partition == ens.partition and back.sequences == ens.sequences
    assert back.meta == {"dataset": "digits"}
    assert x not in back.data.ids.tolist()  # the deleted sample is not on disk
    # the reloaded ensemble keeps working: a retrain there equals a retrain here
    back.retrain_shard(1)
    ens.retrain_shard(1)
    assert torch.equal(back.predict_logits(test.x), ens.predict_logits(test.x))


def test_unchanged_files_are_reused_and_stale_ones_removed(ensemble, tmp_path) -> None:
    ens = ensemble.clone()
    ens.save(tmp_path)
    first = {p.name for p in tmp_path.iterdir()}
    ens.delete([ens.partition.members(0, 0)[0]])
    ens.save(tmp_path)
    second = {p.name for p in tmp_path.iterdir()}
    backbone = [n for n in first if n.startswith("backbone-") and n.endswith(".safetensors")]
    assert backbone and backbone[0] in second  # weights unchanged -> same file, not rewritten
    assert len([n for n in second if n.startswith("state-")]) == 1
    assert not any(n.startswith(".") for n in second)  # no temp files left


def test_interrupted_save_leaves_previous_state(ensemble, small, tmp_path, monkeypatch) -> None:
    _, test = small
    ens = ensemble.clone()
    ens.save(tmp_path)
    expected = ens.predict_logits(test.x)
    ens.delete([ens.partition.members(0, 0)[0]])
    real = store.atomic_write_text

    def crash_on_pointer(path, text):
        if path.name == store.POINTER:
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(store, "atomic_write_text", crash_on_pointer)
    with pytest.raises(KeyboardInterrupt):
        ens.save(tmp_path)
    monkeypatch.undo()
    back = load_ensemble(tmp_path)
    assert back.version == 0 and back.alive.all()
    assert torch.equal(back.predict_logits(test.x), expected)


def test_corrupt_or_missing_state_is_a_clear_error(ensemble, tmp_path) -> None:
    with pytest.raises(UnlearnkitError, match="no saved ensemble"):
        load_ensemble(tmp_path)
    ensemble.save(tmp_path)
    with pytest.raises(UnlearnkitError, match="holds a 's3t' ensemble"):
        SISAEnsemble.load(tmp_path)
    blocks = next(tmp_path.glob("blocks-*.safetensors"))
    blocks.write_bytes(blocks.read_bytes()[:100])
    with pytest.raises(UnlearnkitError, match="missing or corrupt"):
        load_ensemble(tmp_path)


def test_malformed_record_is_a_clear_error(ensemble, tmp_path) -> None:
    ensemble.save(tmp_path)
    record_path = tmp_path / (tmp_path / store.POINTER).read_text().strip()
    record = json.loads(record_path.read_text())
    record["alive"] = np.ones((1, 1, 1), dtype=int).tolist()
    record_path.write_text(json.dumps(record))
    with pytest.raises(UnlearnkitError, match="malformed"):
        load_ensemble(tmp_path)


def test_ensemble_saved_in_the_old_format_still_loads(ensemble, small, tmp_path) -> None:
    """Records written before ``StackSpec`` stored it as ``spec`` with ModelSpec's keys (and
    before LoRA targets were configurable: they load with the default targets)."""
    _, test = small
    ensemble.save(tmp_path)
    record_path = tmp_path / (tmp_path / store.POINTER).read_text().strip()
    record = json.loads(record_path.read_text())
    old = record.pop("stack")
    assert old.pop("lora_targets") == [] and old.pop("lora_layers") == ["linear", "conv2d"]
    assert old.pop("adapt") is None  # before adapt existed: every layer (the default)
    assert set(old) == {"name", "num_classes", "in_chans", "image_size", "options", "rank", "alpha"}
    record["spec"] = old
    record_path.write_text(json.dumps(record))
    back = load_ensemble(tmp_path)
    assert back.spec == ensemble.spec and back.spec.architecture.name == "smallcnn"
    assert torch.equal(back.predict_logits(test.x), ensemble.predict_logits(test.x))


def _saved_files(directory) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    record = json.loads((directory / (directory / "CURRENT").read_text().strip()).read_text())
    return {role: load_file(str(directory / name)) for role, name in record["files"].items()}


def test_a_save_names_its_data_set_and_keeps_no_pixels(ensemble, digits, tmp_path) -> None:
    """With a data set reference in ``meta``: ids only; loading re-reads and checks the data."""
    ens = ensemble.clone()
    ens.meta = {"dataset": "digits", "data_dir": None, "public_fraction": 0.3,
                "dataset_options": {}, "train_fingerprint": digits.train.fingerprint()}  # fmt: skip
    victim = ens.partition.members(0, 1)[0]
    ens.delete([victim])
    ens.save(tmp_path)
    files = _saved_files(tmp_path)
    assert set(files) == {"backbone", "blocks", "ids"}
    assert victim not in files["ids"]["ids"].tolist()
    back = load_ensemble(tmp_path)
    assert torch.equal(back.data.x, ens.data.drop_ids([victim]).x)  # re-read, same pixels
    ens.meta["train_fingerprint"] = "0" * 16  # another data set than the one trained on
    ens.save(tmp_path)
    with pytest.raises(UnlearnkitError, match="fingerprint mismatch"):
        load_ensemble(tmp_path)


def test_switched_off_blocks_and_deleted_rows_are_not_written(ensemble, tmp_path) -> None:
    """Without a reference (arrays from Python) the live rows are inline, as older saves."""
    ens = ensemble.clone()
    victim = ens.partition.members(1, 0)[0]
    ens.delete([victim])
    ens.save(tmp_path)
    files = _saved_files(tmp_path)
    assert victim not in files["data"]["ids"].tolist()
    off = [n for n in ens.blocks.all_names() if n not in ens.switched_on_names()]
    assert off
    for name in off:
        assert not set(ens.stack.block_parameter_names(name)) & set(files["blocks"])
    for name in ens.switched_on_names():
        assert set(ens.stack.block_parameter_names(name)) <= set(files["blocks"])
