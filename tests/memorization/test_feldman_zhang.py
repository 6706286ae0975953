"""Feldman-Zhang estimator: finds mislabeled samples, resumes exactly, same on every executor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.memorization.feldman_zhang import (
    estimate_memorization,
    fz_config,
    memorization_from,
    subset_mask,
)


def test_memorization_formula_by_hand() -> None:
    correct = np.array([[1, 1], [1, 0], [0, 0], [1, 1]])
    member = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=bool)
    mem, err = memorization_from(correct, member)
    # sample 0: in {1, 1} out {0, 1} -> 1 - 0.5; sample 1: in {0, 0} out {1, 1} -> -1
    assert mem.tolist() == [0.5, -1.0]
    assert err[0] == pytest.approx(np.sqrt(0 / 2 + 0.5 / 2))


def test_subset_masks_have_the_fraction_and_differ() -> None:
    a, b = subset_mask(100, 0.7, 0, 0), subset_mask(100, 0.7, 0, 1)
    assert int(a.sum()) == int(b.sum()) == 70
    assert not torch.equal(a, b)
    assert torch.equal(a, subset_mask(100, 0.7, 0, 0))


def test_mislabeled_samples_rank_far_above_the_rest(tiny, tiny_spec, tiny_recipe, tmp_path):
    data, noisy = tiny
    result = estimate_memorization(
        data, tiny_spec, tiny_recipe, fz_config(k=10, chunk_size=5), tmp_path
    )
    mem = result.scores.score
    is_noisy = torch.isin(data.ids, noisy)
    top = torch.argsort(torch.nan_to_num(mem, nan=-1), descending=True)[:24]  # top 10%
    assert int(is_noisy[top].sum()) >= len(noisy) - 1
    assert float(mem[is_noisy].nanmean()) > float(mem[~is_noisy].nanmean()) + 0.3
    assert result.scores.meta["k"] == 10 and result.trained == 10


def test_resumed_run_gives_the_same_scores(tiny, tiny_spec, tiny_recipe, tmp_path):
    data, _ = tiny
    recipe = tiny_recipe.model_copy(update={"epochs": 3})
    cfg = fz_config(k=5, chunk_size=2)
    whole = estimate_memorization(data, tiny_spec, recipe, cfg, tmp_path / "a")
    first = estimate_memorization(data, tiny_spec, recipe, cfg, tmp_path / "b", max_models=3)
    assert first.scores.meta == {"complete": False} and first.trained == 3
    resumed = estimate_memorization(data, tiny_spec, recipe, cfg, tmp_path / "b")
    assert resumed.trained == 2  # only the missing models were trained
    assert torch.equal(whole.scores.score.nan_to_num(7.0), resumed.scores.score.nan_to_num(7.0))
    assert torch.equal(whole.scores.stderr.nan_to_num(7.0), resumed.scores.stderr.nan_to_num(7.0))


@pytest.mark.slow  # starting Ray and its workers takes 30-60 s on a shared 2-core machine
def test_ray_and_local_give_identical_scores(tiny, tiny_spec, tiny_recipe, tmp_path):
    pytest.importorskip("ray")
    from unlearnkit.runtime import create_executor

    data, _ = tiny
    recipe = tiny_recipe.model_copy(update={"epochs": 3})
    cfg = fz_config(k=4, chunk_size=2)
    local = estimate_memorization(data, tiny_spec, recipe, cfg, tmp_path / "local")
    with create_executor("ray", num_cpus=2) as ex:
        remote = estimate_memorization(data, tiny_spec, recipe, cfg, tmp_path / "ray", executor=ex)
    assert remote.trained == 4
    assert torch.equal(local.scores.score.nan_to_num(7.0), remote.scores.score.nan_to_num(7.0))


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"k": 1}, "k"),
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
    ],
)
def test_bad_settings_are_refused(values, field) -> None:
    with pytest.raises(UnlearnkitError, match=f"invalid {field}"):
        fz_config(**values)


def test_bad_settings_write_nothing(tiny, tiny_spec, tiny_recipe, tmp_path):
    data, _ = tiny
    with pytest.raises(UnlearnkitError):
        estimate_memorization(data, tiny_spec, tiny_recipe, fz_config(k=0), tmp_path)
    assert list(tmp_path.iterdir()) == []
