"""Start-up replay: bring the loaded snapshot up to the end of the ledger.

The snapshot names the last ledger event it reflects; every later event that did not fail is
applied in sequence order, exactly as the applier would have (``changes.apply_group``), before
any request is served. Events still ``accepted`` (durable, never applied: a crash came between)
get their result recorded now; events already ``applied`` are re-applied to the model only.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.changes import Change, ResultRow, apply_group, group_changes
from unlearnkit.service.ledger import Event, Ledger
from unlearnkit.service.metrics import MetricSet
from unlearnkit.service.served import ServedModel


@dataclass(frozen=True)
class Replayed:
    events: int  # ledger events after the snapshot (failed ones included)
    applied_seq: int  # the last event the model now reflects


def replay(model: ServedModel, ledger: Ledger, snapshot_seq: int, metrics: MetricSet) -> Replayed:
    """Apply what the snapshot at ``snapshot_seq`` lacks; refuse a ledger that ends before it."""
    last = ledger.last_seq()
    if snapshot_seq > last:
        raise UnlearnkitError(
            f"the model snapshot reflects ledger event {snapshot_seq} but the ledger "
            f"ends at {last} (ledger lost or replaced); refusing to start"
        )
    events = ledger.after(snapshot_seq)
    unfinished = {e.seq for e in events if e.status == "accepted"}
    applied_seq, rows = apply_events(model, events, metrics)
    results = [row for row in rows if row[0] in unfinished]
    if results:
        ledger.finish(results)
    return Replayed(len(events), snapshot_seq if applied_seq is None else applied_seq)


def apply_events(
    model: ServedModel, events: list[Event], metrics: MetricSet
) -> tuple[int | None, list[ResultRow]]:
    """Apply ledger events to ``model`` in order, as the applier did (failed ones skipped):
    the last event applied (None: none) and every change's result row. Also the CLI's
    read-only view of a directory (``record``)."""
    applied_seq = None
    results: list[ResultRow] = []
    changes = [Change.from_event(e) for e in events if e.status != "failed"]
    for group in group_changes(model, changes):
        results += apply_group(model, group, metrics, replay=True)
        applied_seq = group[-1].seq
    return applied_seq, results
