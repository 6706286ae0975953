"""Which blocks are alive, and what each shard serves with the ones that are.

The table is an (m, B, L) array of booleans: shard, sequence, stage. Deleting a sample in slice
j switches off, in every sequence of its shard, the blocks from j's position onwards; a sequence
serves its surviving prefix, a shard its longest one, and a shard with none left is dead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from unlearnkit.exact.sequences import Order
from unlearnkit.exact.stack import block_name

Plan = dict[int, tuple[int, int]]  # shard -> (sequence, prefix length) it serves


class BlockTable:
    """``alive[s, b, k]``: is block k of sequence b of shard s trained on live data only?"""

    def __init__(
        self, num_shards: int, sequences: Sequence[Order], alive: np.ndarray | None = None
    ) -> None:
        self.sequences = [tuple(o) for o in sequences]
        self.num_slices = len(self.sequences[0])
        shape = (num_shards, len(self.sequences), self.num_slices)
        self.alive = np.ones(shape, dtype=bool) if alive is None else np.asarray(alive, dtype=bool)
        if self.alive.shape != shape:
            raise ValueError(f"block table has shape {self.alive.shape}, expected {shape}")

    @property
    def num_shards(self) -> int:
        return int(self.alive.shape[0])

    # -- names -----------------------------------------------------------------------------------
    def shard_names(self, shard: int) -> list[str]:
        """Every block of a shard, sequence by sequence, stage by stage."""
        return [
            block_name(shard, b, k)
            for b in range(len(self.sequences))
            for k in range(self.num_slices)
        ]

    def all_names(self) -> list[str]:
        return [n for s in range(self.num_shards) for n in self.shard_names(s)]

    # -- serving ---------------------------------------------------------------------------------
    def prefix_lengths(self) -> np.ndarray:
        """(m, B) surviving prefix length of every sequence."""
        return np.where(self.alive.all(axis=2), self.num_slices, self.alive.argmin(axis=2))

    def serving_plan(self) -> Plan:
        """Each live shard serves its sequence with the longest surviving prefix (lowest index
        on ties)."""
        lengths = self.prefix_lengths()
        return {
            s: (int(lengths[s].argmax()), int(lengths[s].max()))
            for s in range(lengths.shape[0])
            if lengths[s].max() > 0
        }

    def served(self, shard: int) -> dict[str, int] | None:
        """What one shard serves, as a receipt records it (None: the shard is dead)."""
        seq_len = self.serving_plan().get(shard)
        return None if seq_len is None else {"sequence": seq_len[0], "prefix": seq_len[1]}

    def dead_shards(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.prefix_lengths().max(axis=1) == 0)]

    def pending_shards(self) -> list[int]:
        """Shards with at least one switched-off block (a retrain would revive it)."""
        return [s for s in range(self.num_shards) if not self.alive[s].all()]

    def first_cells(self) -> set[tuple[int, int]]:
        """(shard, first slice) of every sequence with a surviving prefix: the cells whose
        deletion can still kill a sequence (what the capacity formulas count)."""
        lengths = self.prefix_lengths()
        return {
            (s, self.sequences[b][0])
            for s in range(self.num_shards)
            for b in range(len(self.sequences))
            if lengths[s, b] > 0
        }

    # -- changes ---------------------------------------------------------------------------------
    def switch_off(self, shard: int, slice_: int) -> list[dict[str, Any]]:
        """Switch off every block of ``shard`` that saw ``slice_``; returns what was newly off,
        per sequence (a receipt's ``switched_off``)."""
        switched = []
        for b, order in enumerate(self.sequences):
            pos = order.index(slice_)
            newly = [k for k in range(pos, self.num_slices) if self.alive[shard, b, k]]
            if newly:
                self.alive[shard, b, pos:] = False
                switched.append(
                    {
                        "sequence": b,
                        "blocks": newly,
                        "adapters": [block_name(shard, b, k) for k in newly],
                    }
                )
        return switched

    def off_stages(self, shard: int) -> list[tuple[int, int]]:
        """(sequence, stage) of every switched-off block of a shard, each sequence in order."""
        return [
            (b, k)
            for b in range(len(self.sequences))
            for k in range(self.num_slices)
            if not self.alive[shard, b, k]
        ]

    def revive(self, shard: int, stages: Iterable[tuple[int, int]]) -> None:
        """Switch these (sequence, stage) blocks of ``shard`` back on (they were retrained)."""
        for b, k in stages:
            self.alive[shard, b, k] = True
