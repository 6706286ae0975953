"""The ``subset`` dataset option: a seeded, class-stratified sample of the training pool."""

from __future__ import annotations

import inspect

import pytest
import torch
from sklearn.datasets import load_digits

from unlearnkit.data import DATASETS, load_dataset
from unlearnkit.data.base import split_train_test, stratified_sample
from unlearnkit.errors import UnlearnkitError


def _digits_pool_labels() -> torch.Tensor:
    raw = load_digits()
    x = torch.zeros(len(raw.target), 1, 1, 1)
    (_, y), _ = split_train_test(x, torch.tensor(raw.target), 0.2, seed=0)
    return y


def test_every_registered_dataset_takes_subset():
    for name in DATASETS.names():
        assert "subset" in inspect.signature(DATASETS.get(name)).parameters, name


def test_largest_remainder_allocation():
    y = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    # exact shares 2.5, 1.5, 1.0: the one row left over goes to the tie's smaller label
    picked = stratified_sample(y, 5, seed=0)
    assert torch.bincount(y[picked], minlength=3).tolist() == [3, 1, 1]
    assert torch.equal(picked, picked.sort().values) and len(set(picked.tolist())) == 5


def test_stratified_counts_on_digits():
    pool = _digits_pool_labels()
    bundle = load_dataset("digits", subset=500)
    assert len(bundle.train) == 500 and len(bundle.test) == 359  # the test set stays whole
    counts = torch.bincount(bundle.train.y, minlength=10)
    share = torch.bincount(pool, minlength=10).double() * 500 / len(pool)
    assert bool(((counts - share).abs() < 1).all()) and int(counts.sum()) == 500
    assert torch.equal(bundle.train.ids, torch.arange(500))


def test_subset_is_drawn_before_the_public_split():
    bundle = load_dataset("digits", subset=400, public_fraction=0.3)
    assert (len(bundle.public), len(bundle.train)) == (120, 280)
    assert torch.equal(bundle.train.ids, torch.arange(280))
    pooled = torch.cat([bundle.public.y, bundle.train.y])
    assert (
        torch.bincount(pooled, minlength=10).tolist()
        == torch.bincount(load_dataset("digits", subset=400).train.y, minlength=10).tolist()
    )


def test_subset_is_deterministic_for_a_seed():
    a = load_dataset("digits", subset=300, public_fraction=0.3)
    b = load_dataset("digits", subset=300, public_fraction=0.3)
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.public.x, b.public.x)
    assert a.fingerprint != load_dataset("digits", subset=301, public_fraction=0.3).fingerprint
    y = _digits_pool_labels()
    assert torch.equal(stratified_sample(y, 300, 0), stratified_sample(y, 300, 0))
    assert not torch.equal(stratified_sample(y, 300, 0), stratified_sample(y, 300, 1))


def test_the_whole_pool_is_the_same_as_no_subset():
    full = load_dataset("digits")
    assert load_dataset("digits", subset=len(full.train)).fingerprint == full.fingerprint


@pytest.mark.parametrize("bad", [0, 1, 1439, 2.5, True, "100"])
def test_bad_subset_sizes(bad):
    with pytest.raises(UnlearnkitError, match=r"subset must be an integer in 2\.\.1438"):
        load_dataset("digits", subset=bad)


def test_subset_reaches_every_loader():
    synthetic = load_dataset("synthetic", n_train=100, n_test=10, image_size=4, subset=30)
    assert len(synthetic.train) == 30
    noisy = load_dataset("noisy", subset=200, label_noise=0.1)
    assert len(noisy.train) == 200 and noisy.name == "digits+noise0.1"


def test_the_recipe_passes_subset_through_dataset_options():
    from unlearnkit.recipe import RecipeConfig, load_bundle

    bundle = load_bundle(RecipeConfig(dataset_options={"subset": 200}))
    assert len(bundle.public) + len(bundle.train) == 200
