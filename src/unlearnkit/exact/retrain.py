"""When to retrain (the policy) and a retrain computed off to the side (the ticket).

A retrain trains only a shard's switched-off blocks, on its remaining data, so it stays exact.

- ``eager`` (SISA's classic rule): retrain the switched-off blocks of every touched shard at once.
- ``dead_shard`` (S3T default): retrain a shard once it serves nothing.
- ``all_dead``: retrain only when every shard is dead.
- ``manual``: never by itself (a service calls ``prepare_retrain`` / ``commit_retrain``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from unlearnkit.exact.blocks import BlockTable

RetrainPolicy = Literal["eager", "dead_shard", "all_dead", "manual"]


@dataclass
class RetrainTicket:
    """A retrain computed off to the side; ``commit_retrain`` swaps it in if still valid."""

    shard: int
    deleted_in_shard: frozenset[int]
    weights: dict[str, torch.Tensor]
    seconds: float
    stages: tuple[tuple[int, int], ...] = ()  # the (sequence, stage) blocks it trained


def shards_to_retrain(
    policy: RetrainPolicy, table: BlockTable, touched: Iterable[int]
) -> list[int]:
    """The shards ``policy`` retrains right after a deletion that touched ``touched``."""
    if policy == "eager":
        return [s for s in touched if not table.alive[s].all()]
    dead = table.dead_shards()
    if policy == "dead_shard":
        return dead
    if policy == "all_dead":
        return dead if len(dead) == table.num_shards else []
    return []
