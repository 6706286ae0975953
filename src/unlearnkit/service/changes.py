"""Applying ledger events to the served model: one function shared by the live applier and the
start-up replay, so both change the model the same way and write the same receipts.

A ``Change`` is a ledger event on its way to the model. Consecutive deletions form one group
when the model batches them (approximate mode: one downdate for the group); every other event
is a group of its own. ``apply_group`` returns the ledger result rows: ``(seq, status,
receipt, reason)``. A change that fails (a user-level refusal, or a bug) is recorded as failed
with its reason rather than stopping the service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.ledger import Event
from unlearnkit.service.metrics import MetricSet
from unlearnkit.service.served import ServedModel

log = logging.getLogger("unlearnkit.service")
ResultRow = tuple[int, str, dict[str, Any] | None, str | None]  # seq, status, receipt, reason


@dataclass
class Change:
    """A ledger event to apply: a deletion (``sample_ids``) or a retrain of ``shard``. A live
    retrain carries the ``ticket`` trained in the background; a replayed one (``ticket`` None)
    is retrained on the spot."""

    seq: int
    kind: str
    sample_ids: list[int] = field(default_factory=list)
    shard: int | None = None
    ticket: Any = None
    accepted_at: float = 0.0

    @classmethod
    def from_event(cls, event: Event, ticket: Any = None) -> Change:
        shard = event.payload.get("shard")
        return cls(
            seq=event.seq,
            kind=event.kind,
            sample_ids=[int(i) for i in event.payload.get("sample_ids", [])],
            shard=None if shard is None else int(shard),
            ticket=ticket,
            accepted_at=event.accepted_at,
        )


def group_changes(model: ServedModel, items: Sequence[Change]) -> list[list[Change]]:
    """Consecutive deletions form one group when the model batches them (approximate)."""
    groups: list[list[Change]] = []
    batch = getattr(model, "batches_deletions", False)
    for item in items:
        if batch and groups and item.kind == "deletion" and groups[-1][-1].kind == "deletion":
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def apply_group(
    model: ServedModel, group: list[Change], metrics: MetricSet, replay: bool = False
) -> list[ResultRow]:
    """Apply one group; the caller holds the model lock (or runs alone, at start-up)."""
    before = model.version
    started = time.time()
    first = group[0]
    try:
        if first.kind == "retrain":
            if first.ticket is not None:  # trained in the background: swap it in
                change = model.commit_retrain(first.ticket)
            elif first.shard is not None:  # replayed: train it again (deterministic)
                change = model.retrain(first.shard)
            else:
                raise ValueError(f"retrain event {first.seq} names no shard")
            metrics.inc("unlearnkit_retrains_total")
        else:
            change = model.apply_deletions([i for item in group for i in item.sample_ids])
    except (UnlearnkitError, ValueError) as exc:
        return [(item.seq, "failed", None, str(exc)) for item in group]
    except Exception as exc:  # a bug must not stop the applier: record it and go on
        log.exception("applying ledger events %s failed", [item.seq for item in group])
        return [(item.seq, "failed", None, f"internal error: {exc!r}") for item in group]
    rows: list[ResultRow] = []
    for item in group:
        receipt = {
            "change": change,
            "model_version_before": before,
            "model_version_after": model.version,
            "accepted_at": item.accepted_at,
            "apply_started_at": started,
            "applied_at": time.time(),
            "replayed": replay,
        }
        rows.append((item.seq, "applied", receipt, None))
    return rows
