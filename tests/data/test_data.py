import json
import pickle

import numpy as np
import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import NotFoundError, UnlearnkitError


def test_digits_split_is_fixed_and_ids_are_stable():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert len(a.train) + len(a.test) == 1797
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.train.ids, torch.arange(len(a.train)))
    assert a.num_classes == 10 and a.in_chans == 1 and a.image_size == 8
    assert a.fingerprint == b.fingerprint


def test_public_part_is_disjoint_from_private(digits):
    assert digits.public is not None
    assert len(digits.public) + len(digits.train) + len(digits.test) == 1797
    pub = {tuple(r.tolist()) for r in digits.public.x.flatten(1)}
    priv = {tuple(r.tolist()) for r in digits.train.x.flatten(1)}
    # digits has a few exact duplicate images; the parts must share (almost) none
    assert len(pub & priv) <= 5


def test_forget_specs(digits, tmp_path):
    train = digits.train
    ids = select_forget(train, "class:3")
    assert bool((train.select_ids(ids).y == 3).all())
    assert len(ids) == int((train.y == 3).sum())
    assert len(select_forget(train, "random:100")) == 100
    assert len(select_forget(train, "random:0.1")) == round(0.1 * len(train))
    assert not torch.equal(
        select_forget(train, "random:50", seed=0), select_forget(train, "random:50", seed=1)
    )
    (tmp_path / "ids.txt").write_text("5\n7\n9\n")
    assert select_forget(train, f"indices:{tmp_path / 'ids.txt'}").tolist() == [5, 7, 9]
    (tmp_path / "ids.json").write_text(json.dumps([1, 2]))
    assert select_forget(train, f"indices:{tmp_path / 'ids.json'}").tolist() == [1, 2]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("class:42", "no such class"),
        ("random:0", "random:0"),
        ("random:100000", "count"),
        ("bogus:1", "unknown forget-set kind"),
        ("class", "KIND:ARG"),
        ("random:1.0", "whole training set"),
    ],
)
def test_bad_forget_specs(digits, spec, message):
    with pytest.raises(UnlearnkitError, match=message):
        select_forget(digits.train, spec)


def test_indices_out_of_range(digits, tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("3\n999999\n")
    with pytest.raises(UnlearnkitError, match="999999 is out of range"):
        select_forget(digits.train, f"indices:{path}")
    with pytest.raises(UnlearnkitError, match="cannot read"):
        select_forget(digits.train, f"indices:{tmp_path / 'missing.txt'}")


def test_select_ids_unknown_id(digits):
    with pytest.raises(NotFoundError):
        digits.train.select_ids([10**6])


def _write_cifar(root, n_per_batch=6):
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, (n_per_batch, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, n_per_batch)),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_reads_local_batches(tmp_path):
    _write_cifar(tmp_path)
    bundle = load_dataset("cifar10", str(tmp_path))
    assert len(bundle.train) == 30 and len(bundle.test) == 6
    assert bundle.train.x.shape[1:] == (3, 32, 32) and bundle.num_classes == 10


def test_cifar_errors(tmp_path):
    with pytest.raises(UnlearnkitError, match="needs --data-dir"):
        load_dataset("cifar10")
    with pytest.raises(UnlearnkitError, match="no 'data_batch_1'"):
        load_dataset("cifar10", str(tmp_path))
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(UnlearnkitError, match="cannot read CIFAR batch"):
        load_dataset("cifar10", str(tmp_path))


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "eel"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            img = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / cls / f"{i}.png")
    bundle = load_dataset("imagefolder", str(tmp_path), image_size=16)
    assert bundle.num_classes == 3
    assert len(bundle.train) + len(bundle.test) == 15
    assert bundle.train.x.shape[1:] == (3, 16, 16)
    with pytest.raises(UnlearnkitError, match="does not exist"):
        load_dataset("imagefolder", str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnlearnkitError, match="imagefolder"):
        load_dataset("imagefolder", str(empty))


def test_synthetic_and_unknown_options():
    bundle = load_dataset("synthetic", n_train=40, n_test=10, image_size=16, channels=3)
    assert bundle.train.x.shape == (40, 3, 16, 16)
    with pytest.raises(UnlearnkitError, match="no option 'colour'"):
        load_dataset("synthetic", colour=1)
    with pytest.raises(UnlearnkitError, match="n_train"):
        load_dataset("synthetic", n_train=0)
    with pytest.raises(UnlearnkitError, match="unknown dataset"):
        load_dataset("no_such_dataset")


def test_normalisation_does_not_depend_on_the_deletable_data():
    from unlearnkit.data.assemble import assemble
    from unlearnkit.data.base import seeded_permutation

    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 4, 4), torch.arange(40) % 4
    test = (torch.rand(8, 1, 4, 4), torch.arange(8) % 4)
    a = assemble("t", (x, y), test, 4, seed=0, public_fraction=0.5)
    private = seeded_permutation(40, 7919)[20:].sort().values  # the pool rows that form D
    changed = x.clone()
    changed[private[3]] = 100.0  # one sample of D, changed beyond recognition
    b = assemble("t", (changed, y), test, 4, seed=0, public_fraction=0.5)
    assert torch.equal(a.public.x, b.public.x) and torch.equal(a.test.x, b.test.x)
    differs = (a.train.x != b.train.x).flatten(1).any(1)
    assert differs.nonzero().flatten().tolist() == [3]  # only that sample's own row
