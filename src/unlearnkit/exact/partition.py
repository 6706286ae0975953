"""Sharding and slicing of D: a persisted ownership map sample id -> (shard, slice).

Each id's cell comes from a keyed hash of (seed, id) alone, so the place of a sample never
depends on which other samples are in D: the map built on D without x is the map of D minus x.
That is what makes "the same procedure run on D without x" reproducible from scratch, and exact
unlearning checkable bit for bit. Cells are balanced in expectation (multinomial sizes), not
exactly; an empty slice is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unlearnkit.errors import UnlearnkitError


@dataclass
class Partition:
    """Who owns which sample: ``owner[id] = (shard, slice)``; ``deleted`` ids are gone for good."""

    num_shards: int
    num_slices: int
    seed: int
    owner: dict[int, tuple[int, int]]
    deleted: set[int] = field(default_factory=set)

    def __deepcopy__(self, memo: dict[int, Any]) -> Partition:
        """A copy that shares ``owner`` (never changed once made: a change builds a new
        partition) and owns its ``deleted``: a service's snapshot copy of 100,000 owners is
        then a set copy, not 100,000 tuples copied under its lock."""
        return Partition(self.num_shards, self.num_slices, self.seed, self.owner, set(self.deleted))

    @classmethod
    def create(
        cls, ids: torch.Tensor | Iterable[int], num_shards: int, num_slices: int, seed: int = 0
    ) -> Partition:
        """Put every id in cell ``hash(seed, id) mod (m L)`` (shard = cell mod m)."""
        id_list = sorted(int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))
        if len(set(id_list)) != len(id_list):
            raise UnlearnkitError("sample ids must be unique to build a partition")
        if num_shards < 1:
            raise UnlearnkitError(f"num_shards must be >= 1, got {num_shards}")
        if num_slices < 1:
            raise UnlearnkitError(f"num_slices must be >= 1, got {num_slices}")
        cells = num_shards * num_slices
        if cells > len(id_list):
            raise UnlearnkitError(
                f"num_shards x num_slices = {num_shards} x {num_slices} = {cells} exceeds the "
                f"{len(id_list)} training samples (every slice needs at least one sample)"
            )
        cell = cell_of(np.asarray(id_list, dtype=np.int64), seed) % np.uint64(cells)
        counts = np.bincount(cell.astype(np.int64), minlength=cells)
        if counts.min() == 0:
            empty = int(np.argmin(counts))
            raise UnlearnkitError(
                f"slice {empty // num_shards} of shard {empty % num_shards} would be empty with "
                f"{len(id_list)} samples in {num_shards} x {num_slices} cells: use fewer "
                "shards or slices"
            )
        owner = {
            i: (int(c) % num_shards, int(c) // num_shards)
            for i, c in zip(id_list, cell.tolist(), strict=True)
        }
        return cls(num_shards, num_slices, seed, owner)

    # -- queries -------------------------------------------------------------------------------
    def locate(self, sample_id: int) -> tuple[int, int] | None:
        """(shard, slice) of a live or deleted id; None for an id never in D."""
        return self.owner.get(int(sample_id))

    def is_live(self, sample_id: int) -> bool:
        return int(sample_id) in self.owner and int(sample_id) not in self.deleted

    def members(self, shard: int, slice_: int | None = None) -> list[int]:
        """Live ids of a shard (or one of its slices), sorted: the training order is fixed."""
        return sorted(
            i
            for i, (s, k) in self.owner.items()
            if s == shard and (slice_ is None or k == slice_) and i not in self.deleted
        )

    def slice_sizes(self) -> list[list[int]]:
        sizes = [[0] * self.num_slices for _ in range(self.num_shards)]
        for i, (s, k) in self.owner.items():
            if i not in self.deleted:
                sizes[s][k] += 1
        return sizes

    @property
    def num_live(self) -> int:
        return len(self.owner) - len(self.deleted)

    # -- changes -------------------------------------------------------------------------------
    def without(self, ids: Iterable[int]) -> Partition:
        """A copy with ``ids`` marked deleted (the map of "D without these samples")."""
        gone = {int(i) for i in ids}
        unknown = sorted(gone - set(self.owner))
        if unknown:
            raise UnlearnkitError(f"sample id {unknown[0]} is not in the partition")
        return Partition(
            self.num_shards, self.num_slices, self.seed, dict(self.owner), self.deleted | gone
        )

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        ids = sorted(self.owner)
        return {
            "num_shards": self.num_shards,
            "num_slices": self.num_slices,
            "seed": self.seed,
            "ids": ids,
            "shard": [self.owner[i][0] for i in ids],
            "slice": [self.owner[i][1] for i in ids],
            "deleted": sorted(self.deleted),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        try:
            owner = {
                int(i): (int(s), int(k))
                for i, s, k in zip(data["ids"], data["shard"], data["slice"], strict=True)
            }
            return cls(
                int(data["num_shards"]),
                int(data["num_slices"]),
                int(data["seed"]),
                owner,
                {int(i) for i in data["deleted"]},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnlearnkitError(f"partition record is malformed: {exc}") from None


def cell_of(ids: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (seed, id): a fixed, platform-independent pseudo-random uint64 per id."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
