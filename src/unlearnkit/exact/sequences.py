"""Which B orders (permutations of the L slices) each shard trains along.

A deletion in the slice at position p of a sequence kills that sequence's blocks p..L, so a
shard lives as long as some sequence keeps its first slice. Uniform deletions: cyclic rotations
put every slice first exactly once (B <= L). A per-slice deletion prior: bipartite matching
(slices x positions) puts likely-deleted slices late and spreads the sequences apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from unlearnkit.errors import UnlearnkitError

Order = tuple[int, ...]


def _check_counts(num_slices: int, num_sequences: int) -> None:
    if num_slices < 1:
        raise UnlearnkitError(f"num_slices must be >= 1, got {num_slices}")
    if num_sequences < 1:
        raise UnlearnkitError(f"num_sequences must be >= 1, got {num_sequences}")
    if num_sequences > math.factorial(num_slices):
        raise UnlearnkitError(
            f"num_sequences = {num_sequences} exceeds the {math.factorial(num_slices)} distinct "
            f"orders of {num_slices} slices (L!)"
        )


def check_prior(prior: Sequence[float], num_slices: int) -> np.ndarray:
    """A per-slice deletion prior must be a probability vector of length L."""
    p = np.asarray(prior, dtype=float)
    if p.shape != (num_slices,):
        raise UnlearnkitError(
            f"deletion prior has {p.size} entries, expected one per slice ({num_slices})"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise UnlearnkitError(f"deletion prior {p.tolist()} has a negative or non-finite entry")
    if abs(p.sum() - 1.0) > 1e-6:
        raise UnlearnkitError(f"deletion prior {p.tolist()} sums to {p.sum():.6g}, not 1")
    return p


def cyclic_sequences(num_slices: int, num_sequences: int, seed: int = 0) -> list[Order]:
    """Rotations of (0..L-1): every slice at every position once when B = L.

    B > L (allowed up to L!) adds reversed rotations, then seeded random distinct orders.
    """
    _check_counts(num_slices, num_sequences)
    base = list(range(num_slices))
    orders: list[Order] = []
    candidates = [tuple(base[b:] + base[:b]) for b in range(num_slices)]
    rev = base[::-1]
    candidates += [tuple(rev[b:] + rev[:b]) for b in range(num_slices)]
    for order in candidates:
        if order not in orders:
            orders.append(order)
        if len(orders) == num_sequences:
            return orders
    rng = np.random.default_rng(seed)
    while len(orders) < num_sequences:
        order = tuple(int(i) for i in rng.permutation(num_slices))
        if order not in orders:
            orders.append(order)
    return orders


def matched_sequences(prior: Sequence[float], num_sequences: int) -> list[Order]:
    """One assignment problem per sequence: slices x positions.

    Cost of slice j at position k = (prior_j / max prior) * (L-1-k)  (a likely-deleted slice
    early loses many blocks) + the number of earlier sequences that already put j at k
    (diversity, so the sequences do not all start with the same slice).
    """
    num_slices = len(prior)
    _check_counts(num_slices, num_sequences)
    p = check_prior(prior, num_slices)
    late = np.arange(num_slices - 1, -1, -1, dtype=float)  # L-1-k
    urgency = np.outer(p / p.max(), late)
    used = np.zeros((num_slices, num_slices))
    orders: list[Order] = []
    while len(orders) < num_sequences:
        slices, positions = linear_sum_assignment(urgency + used)
        order_arr = np.empty(num_slices, dtype=int)
        order_arr[positions] = slices
        order = _distinct(tuple(int(i) for i in order_arr), orders)
        orders.append(order)
        used[list(order), np.arange(num_slices)] += 1
    return orders


def _distinct(order: Order, taken: list[Order]) -> Order:
    """``order`` if new, else its first unused rotation, else a seeded random unused order."""
    for shift in range(len(order)):
        candidate = order[shift:] + order[:shift]
        if candidate not in taken:
            return candidate
    rng = np.random.default_rng(len(taken))
    while True:
        candidate = tuple(int(i) for i in rng.permutation(len(order)))
        if candidate not in taken:
            return candidate


def select_sequences(
    num_slices: int, num_sequences: int, prior: Sequence[float] | None = None, seed: int = 0
) -> list[Order]:
    """Cyclic rotations for a uniform prior (None), matching otherwise."""
    if prior is None:
        return cyclic_sequences(num_slices, num_sequences, seed)
    return matched_sequences(check_prior(prior, num_slices).tolist(), num_sequences)
