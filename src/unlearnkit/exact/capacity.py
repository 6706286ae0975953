"""Deletion capacity: how many deletions an ensemble absorbs before every shard is dead.

A shard is dead when no sequence keeps a non-empty prefix, i.e. every sequence's first slice has
lost a sample. With uniform deletions over (shard, slice) cells this is a coupon collector over
the m*B' "first-slice" cells (B' = min(B, L) distinct first slices per shard):

    SISA: m L H_m          S3T: m L H_{m B'}          H_n = 1 + 1/2 + ... + 1/n

The Monte Carlo simulator plays deletion streams (uniform or with a per-slice prior) against the
actual sequences, so it also covers priors and sequence sets the closed form does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.sequences import Order, check_prior, select_sequences


def harmonic(n: int) -> float:
    if n < 1:
        raise UnlearnkitError(f"harmonic number needs n >= 1, got {n}")
    return float(sum(1.0 / k for k in range(1, n + 1)))


def _check(num_shards: int, num_slices: int) -> None:
    if num_shards < 1 or num_slices < 1:
        raise UnlearnkitError(f"need m >= 1 and L >= 1, got m={num_shards}, L={num_slices}")


def sisa_capacity(num_shards: int, num_slices: int) -> float:
    """Expected uniform deletions before every SISA shard has lost its first slice."""
    _check(num_shards, num_slices)
    return num_shards * num_slices * harmonic(num_shards)


def s3t_capacity(num_shards: int, num_slices: int, num_sequences: int) -> float:
    """Expected uniform deletions before every S3T shard is dead (B' = min(B, L))."""
    _check(num_shards, num_slices)
    if num_sequences < 1:
        raise UnlearnkitError(f"num_sequences must be >= 1, got {num_sequences}")
    return num_shards * num_slices * harmonic(num_shards * min(num_sequences, num_slices))


def remaining_capacity_theory(
    num_shards: int, num_slices: int, first_cells: set[tuple[int, int]]
) -> float:
    """Expected uniform deletions left in a partly used ensemble: m L H_n over the n (shard,
    first slice) cells that still start a surviving prefix (0 once every shard is dead)."""
    _check(num_shards, num_slices)
    return num_shards * num_slices * harmonic(len(first_cells)) if first_cells else 0.0


@dataclass
class SimulationResult:
    mean: float
    std: float
    stderr: float
    deletions: np.ndarray  # per trial: deletions until every shard was dead
    live_curve: np.ndarray  # mean number of live shards after k deletions, k = 0..len-1


def simulate_capacity(
    num_shards: int,
    num_slices: int,
    sequences: Sequence[Order] | int = 1,
    prior: Sequence[float] | None = None,
    trials: int = 2000,
    seed: int = 0,
    max_steps: int | None = None,
    initial_prefix: np.ndarray | Sequence[Sequence[int]] | None = None,
) -> SimulationResult:
    """Play ``trials`` deletion streams until all shards are dead.

    Each deletion picks a shard uniformly and a slice from ``prior`` (uniform if None). Every
    shard trains ``sequences`` (a list of orders, or B for the default selection for ``prior``).
    Sampling is with replacement (slices never run empty), as in the closed forms.
    ``initial_prefix`` (m x B surviving prefix lengths) starts from a partly used ensemble.
    """
    _check(num_shards, num_slices)
    if trials < 1:
        raise UnlearnkitError(f"trials must be >= 1, got {trials}")
    if isinstance(sequences, int):
        sequences = select_sequences(num_slices, sequences, prior)
    p = np.full(num_slices, 1.0 / num_slices) if prior is None else check_prior(prior, num_slices)
    orders = np.asarray(sequences, dtype=int)
    if orders.ndim != 2 or orders.shape[1] != num_slices:
        raise UnlearnkitError(f"sequences must be orders of {num_slices} slices")
    num_seq = orders.shape[0]
    position = np.empty_like(orders)  # position[b, slice] = where that slice sits in sequence b
    position[np.arange(num_seq)[:, None], orders] = np.arange(num_slices)[None, :]
    rng = np.random.default_rng(seed)
    prefix = np.full((trials, num_shards, num_seq), num_slices)
    if initial_prefix is not None:
        prefix[:] = np.asarray(initial_prefix, dtype=int)[None]
        if (prefix.max(axis=2) == 0).all():
            zeros = np.zeros(trials, dtype=int)
            return SimulationResult(0.0, 0.0, 0.0, zeros, np.zeros(1))
    done_at = np.zeros(trials, dtype=int)
    live_curve = [float((prefix[0].max(axis=1) > 0).sum())]
    limit = max_steps or 1000 * num_shards * num_slices * max(1, num_seq)
    rows = np.arange(trials)
    for step in range(1, limit + 1):
        shard = rng.integers(num_shards, size=trials)
        slc = rng.choice(num_slices, size=trials, p=p)
        hit = position[:, slc].T  # (trials, B): position of the deleted slice in each sequence
        prefix[rows, shard] = np.minimum(prefix[rows, shard], hit)
        live = (prefix.max(axis=2) > 0).sum(axis=1)
        newly = (live == 0) & (done_at == 0)
        done_at[newly] = step
        live_curve.append(float(live.mean()))
        if (done_at > 0).all():
            break
    else:
        raise UnlearnkitError(
            f"simulation did not finish within {limit} deletions "
            "(a slice with prior 0 can never be deleted)"
        )
    d = done_at.astype(float)
    return SimulationResult(
        float(d.mean()),
        float(d.std(ddof=1)) if trials > 1 else 0.0,
        float(d.std(ddof=1) / np.sqrt(trials)) if trials > 1 else 0.0,
        done_at,
        np.asarray(live_curve),
    )
