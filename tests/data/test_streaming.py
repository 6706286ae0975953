"""Streaming data (issue 25): lazy splits, DataLoader workers, seeded augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from unlearnkit.data import load_dataset
from unlearnkit.data import samples as samples_module
from unlearnkit.data.base import concat_splits
from unlearnkit.data.loader import iterate_batches
from unlearnkit.data.samples import FileSamples, TensorSamples
from unlearnkit.data.transforms import make_augmentation
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.runtime.device import Runtime, using_runtime
from unlearnkit.training import TrainConfig, accuracy, batch_indices, predict_logits, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", public_fraction=0.3)


def _folder(root: Path, n: int = 8, size: int = 24) -> Path:
    rng = np.random.default_rng(1)
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size + 6, 3), dtype=np.uint8)
            img[4:-4, 4:-4, k] = 200
            Image.fromarray(img).save(root / name / f"{i:02d}.jpg", quality=90)
    return root


def test_builtin_sets_stay_uint8_and_parts_share_one_store(digits):
    train, public = digits.train.samples, digits.public.samples
    assert isinstance(train, TensorSamples) and train.storage.dtype == torch.uint8
    assert train.element_size == 1
    assert train.storage is public.storage  # one store, two index views
    assert train.storage.nbytes == train.store_len * 1 * 8 * 8  # not a float32 copy
    # subsets, id selections and concatenations are views of the same store
    retain, forget = digits.train.drop_ids([0, 5, 9]), digits.train.select_ids([0, 5, 9])
    both = concat_splits(retain, forget)
    for split in (retain, forget, both):
        assert split.samples.storage is train.storage
    assert torch.equal(both.subset(torch.argsort(both.ids)).x, digits.train.x)


def test_inputs_are_normalised_on_access_as_float32(digits):
    x = digits.train.x
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
    prep = digits.preprocessing
    raw = digits.train.samples.pixels().float() / 16.0
    assert torch.equal(x, prep.normalise_(raw))
    rows = torch.tensor([3, 1, 4])
    assert torch.equal(digits.train.samples.load(rows), x[rows])


def test_hand_built_split_returns_its_own_tensor():
    from unlearnkit.data.base import ArraySplit

    x = torch.randn(5, 1, 4, 4)
    split = ArraySplit(x, torch.zeros(5, dtype=torch.long), torch.arange(5))
    assert split.x is x  # old call sites that write into split.x still do


def test_workers_give_the_same_batches_as_the_main_process(digits):
    plan = batch_indices(len(digits.train), 64, torch.Generator().manual_seed(4))[:6]
    seeds = list(range(len(plan)))
    aug = make_augmentation("pad_crop_flip", 8)
    main = list(iterate_batches(digits.train, plan, seeds=seeds, augment=aug, workers=0))
    forked = list(iterate_batches(digits.train, plan, seeds=seeds, augment=aug, workers=2))
    assert len(main) == len(forked) == 6
    for a, b in zip(main, forked, strict=True):
        for u, v in zip(a, b, strict=True):
            assert torch.equal(u, v)


def test_training_with_two_workers_matches_workers_zero(digits):
    def fit(workers: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("smallcnn", 10, 1, 8)
        cfg = TrainConfig(epochs=1, batch_size=64, seed=2, augment="pad_crop_flip")
        with using_runtime(Runtime(workers=workers)):
            train(model, digits.train.subset(torch.arange(200)), cfg)
        return model.state_dict()

    a, b = fit(0), fit(2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_augmentation_is_seeded_and_changes_training_only(digits):
    aug = make_augmentation("pad_crop_flip", 8)
    rows = torch.arange(32)
    one = digits.train.samples.load(rows, aug, seed=11)
    assert torch.equal(one, digits.train.samples.load(rows, aug, seed=11))
    assert not torch.equal(one, digits.train.samples.load(rows, aug, seed=12))
    assert not torch.equal(one, digits.train.samples.load(rows))
    # loading without augmentation (evaluation, NTK, service) is untouched by earlier draws
    assert torch.equal(digits.train.samples.load(rows), digits.train.x[:32])

    def fit(augment: str) -> torch.nn.Module:
        torch.manual_seed(0)
        model = create_model("smallcnn", 10, 1, 8)
        cfg = TrainConfig(epochs=1, batch_size=64, seed=0, augment=augment)
        train(model, digits.train.subset(torch.arange(256)), cfg)
        return model

    plain, augmented = fit("none"), fit("pad_crop_flip")
    assert any(
        not torch.equal(p, q)
        for p, q in zip(plain.parameters(), augmented.parameters(), strict=True)
    )
    again = fit("pad_crop_flip")
    assert all(
        torch.equal(p, q) for p, q in zip(augmented.parameters(), again.parameters(), strict=True)
    )
    # evaluation never augments: the split's predictions equal those of its plain inputs
    assert torch.equal(
        predict_logits(augmented, digits.test), predict_logits(augmented, digits.test.x)
    )
    expected = 100.0 * float(
        (predict_logits(augmented, digits.test.x).argmax(1) == digits.test.y).float().mean()
    )
    assert accuracy(augmented, digits.test) == expected


def test_unknown_augmentation_fails_naming_it():
    with pytest.raises(ValidationError, match="augment"):
        TrainConfig(augment="mixup")


def test_imagefolder_is_paths_decoded_on_demand(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")
    calls = []
    decode = samples_module.decode_image

    def counting(*args, **kwargs):
        calls.append(args[0])
        return decode(*args, **kwargs)

    monkeypatch.setattr(samples_module, "decode_image", counting)
    bundle = load_dataset("imagefolder", str(root), image_size=16)
    assert calls == []  # loading reads and checks the files but keeps no pixels
    train = bundle.train.samples
    assert isinstance(train, FileSamples) and train.element_size == 0
    assert not any(
        isinstance(v, torch.Tensor) and v.dim() == 4 for v in vars(bundle.train.samples).values()
    )
    x = bundle.train.samples.load([0, 2])
    assert len(calls) == 2 and x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    # decoded on demand exactly as the old decode-everything path made it
    prep = bundle.preprocessing
    with Image.open(root / bundle.train.paths[2]) as img:
        want = prep.from_uint8(prep.image_pixels(img)[None])
    assert torch.equal(x[1:], want)
    # the DataLoader with workers decodes the same inputs
    plan = [torch.tensor([0, 1, 2]), torch.tensor([3, 4])]
    for (a, _, _), (b, _, _) in zip(
        iterate_batches(bundle.train, plan),
        iterate_batches(bundle.train, plan, workers=2),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_imagefolder_fingerprint_reads_no_pixels(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data", n=4)
    bundle = load_dataset("imagefolder", str(root), image_size=12)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded a file to fingerprint it")

    monkeypatch.setattr(samples_module, "decode_image", refuse)
    assert bundle.test.fingerprint() == bundle.test.fingerprint()
    assert bundle.train.fingerprint() != bundle.test.fingerprint()


def test_imagefolder_subset_manifest_still_matches_the_folder(tmp_path):
    from unlearnkit.data.imagefolder import check_folder

    root = _folder(tmp_path / "data", n=6)
    bundle = load_dataset("imagefolder", str(root), image_size=12, subset=6)
    parts = [e.part for e in bundle.manifest.entries]
    assert parts.count("train") == 6 and parts.count("unused") == 4 and len(parts) == 12
    check_folder(root, bundle.manifest)  # a subset model reopens against the same folder
    (root / "a" / "extra.jpg").write_bytes((root / "a" / "00.jpg").read_bytes())
    with pytest.raises(UnlearnkitError, match=r"extra\.jpg"):
        check_folder(root, bundle.manifest)


@pytest.mark.slow
def test_cli_workers_train_and_evaluate_agree_with_workers_zero(tmp_path):
    from cli_subprocess import cli

    root = _folder(tmp_path / "data", n=10)
    model = tmp_path / "model"
    proc = cli(
        "train", "--dataset", "imagefolder", "--data-dir", str(root), "--image-size", "16",
        "--no-pretrain", "--epochs", "1", "--model", "smallcnn", "--peft", "full",
        "--workers", "2", "--out", str(model),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tables = []
    for workers in ("0", "2"):
        proc = cli("evaluate", "--from", str(model), "--workers", workers)
        assert proc.returncode == 0, proc.stderr
        tables.append(proc.stdout)
    assert tables[0] == tables[1] and "%" in tables[0]


def test_cli_bad_workers_value_is_one_clean_line(tmp_path):
    from cli_subprocess import cli

    proc = cli("train", "--out", str(tmp_path / "m"), "--workers", "-1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--workers" in proc.stderr and not (tmp_path / "m").exists()


def test_a_pickled_view_ships_its_own_rows_only() -> None:
    """A shard job pickled for a worker process must not carry the whole data set."""
    train = load_dataset("digits").train
    shard = train.subset(torch.arange(0, len(train), 10))
    whole = len(pickle.dumps(train))
    sent = pickle.loads(pickle.dumps(shard))
    assert len(pickle.dumps(shard)) < whole / 5
    assert sent.samples.storage.dtype == torch.uint8  # still the stored bytes, not floats
    assert torch.equal(sent.x, shard.x) and torch.equal(sent.ids, shard.ids)
