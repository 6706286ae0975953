"""Ownership map and sequence selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.sequences import cyclic_sequences, matched_sequences, select_sequences


def test_partition_is_balanced_and_covers_every_id() -> None:
    part = Partition.create(range(2000), num_shards=5, num_slices=4, seed=3)
    assert sorted(part.owner) == list(range(2000))
    sizes = np.array(part.slice_sizes())
    assert sizes.sum() == 2000
    assert sizes.min() > 60 and sizes.max() < 140  # multinomial around 100 per cell
    assert Partition.create(range(2000), 5, 4, seed=3).owner == part.owner
    assert Partition.create(range(2000), 5, 4, seed=4).owner != part.owner


def test_partition_of_d_without_x_is_the_partition_minus_x() -> None:
    """A sample's cell depends on (seed, id) only: removing others never moves it."""
    full = Partition.create(range(500), 4, 3, seed=1)
    smaller = Partition.create([i for i in range(500) if i not in (0, 17, 250)], 4, 3, seed=1)
    assert smaller.owner == {i: c for i, c in full.owner.items() if i not in (0, 17, 250)}


def test_empty_slice_is_refused() -> None:
    with pytest.raises(UnlearnkitError, match="would be empty"):
        Partition.create(range(12), 4, 3, seed=0)


def test_deletion_only_removes_members() -> None:
    part = Partition.create(range(60), 3, 2, seed=0)
    smaller = part.without([7, 11])
    for i in range(60):
        assert smaller.locate(i) == part.locate(i)
    shard, slc = part.locate(7)
    assert 7 in part.members(shard, slc) and 7 not in smaller.members(shard, slc)
    assert smaller.num_live == 58 and part.num_live == 60
    assert Partition.from_dict(smaller.to_dict()) == smaller


@pytest.mark.parametrize("m,L,n", [(0, 2, 10), (2, 0, 10), (4, 4, 15)])
def test_invalid_shape_is_a_clear_error(m: int, L: int, n: int) -> None:
    with pytest.raises(UnlearnkitError, match="num_s"):
        Partition.create(range(n), m, L)


def test_cyclic_puts_every_slice_at_every_position_once() -> None:
    for L in (2, 3, 4, 7):
        orders = np.array(cyclic_sequences(L, L))
        for k in range(L):
            assert sorted(orders[:, k]) == list(range(L))  # each position: every slice once
        assert len({tuple(o) for o in orders}) == L


def test_more_sequences_than_orders_is_rejected() -> None:
    with pytest.raises(UnlearnkitError, match="L!"):
        cyclic_sequences(3, 7)
    assert len(set(cyclic_sequences(3, 6))) == 6  # all 3! orders are fine


def test_matching_places_high_prior_slices_late() -> None:
    prior = [0.05, 0.6, 0.05, 0.3]
    orders = np.array(matched_sequences(prior, 3))
    assert list(orders[0][-2:]) == [3, 1]  # first sequence: likeliest slice last
    mean_pos = [np.mean([list(o).index(j) for o in orders]) for j in range(4)]
    assert mean_pos[1] > mean_pos[3] > max(mean_pos[0], mean_pos[2])
    assert len({tuple(o) for o in orders}) == 3
    # the first slices are the unlikely ones (they decide when the shard dies)
    assert set(orders[:, 0]) <= {0, 2, 3}


def test_uniform_prior_matching_is_a_latin_square() -> None:
    orders = np.array(select_sequences(4, 4, prior=[0.25] * 4))
    for k in range(4):
        assert sorted(orders[:, k]) == [0, 1, 2, 3]


@pytest.mark.parametrize("prior", [[0.5, 0.6], [1.2, -0.2], [0.5, 0.5, 0.0], [float("nan"), 1]])
def test_bad_prior_is_rejected(prior: list[float]) -> None:
    with pytest.raises(UnlearnkitError, match="prior"):
        matched_sequences(prior, 1) if len(prior) == 2 else select_sequences(2, 1, prior)


def test_factorial_bound() -> None:
    assert len(set(matched_sequences([0.1, 0.2, 0.7], math.factorial(3)))) == 6
