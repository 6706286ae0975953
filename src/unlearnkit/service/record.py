"""The one record of deletions of a model directory, for the CLI: the service's own ledger and
snapshots, read and appended through the service's code.

A model directory's current state is its newest snapshot (or its base model) plus the ledger
events after it, applied as the service's start-up replay applies them (``changes``). So
``s3t status`` / ``predict`` show what the service did, and ``s3t delete`` / ``retrain``
append events that a later ``serve`` replays or finds already in its snapshot.

- ``read_state``: read-only (a running service may be writing): the snapshot, the ledger read
  through SQLite's WAL without locking (``ledger.read_events``), replayed in memory.
- ``Writer``: under the directory's writer lock (``writer_lock``; refused in one line while a
  service runs there): the ledger opened and verified as ``serve`` opens it, each change
  appended (client ``cli``), applied, finished, then a snapshot, which erases what deleted
  samples were trained into (``snapshots``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.changes import Change, apply_group
from unlearnkit.service.engine import LEDGER_FILE
from unlearnkit.service.ledger import FORMAT, Event, Ledger, read_events
from unlearnkit.service.metrics import service_metrics
from unlearnkit.service.replay import apply_events, replay
from unlearnkit.service.served import ServedModel
from unlearnkit.service.snapshots import SnapshotStore
from unlearnkit.service.writer_lock import WriterLock

CLI_CLIENT = "cli"  # the ledger's client name for changes made through the CLI


@dataclass
class DirectoryState:
    """A model directory as the record says it is now."""

    model: ServedModel
    applied_seq: int  # the last ledger event the model reflects
    events: list[Event]  # the whole ledger, in order

    def deleting(self) -> dict[int, Event]:
        """Sample id -> the deletion event that deletes it (accepted or applied)."""
        out: dict[int, Event] = {}
        for e in self.events:
            if e.kind == "deletion" and e.status != "failed":
                for i in e.payload.get("sample_ids", []):
                    out.setdefault(int(i), e)
        return out


def read_state(model_dir: Path, mode: str = "exact", tries: int = 3) -> DirectoryState:
    """The current state, read-only: nothing in the directory is written. A running service
    may replace its snapshot while it is read: then it is read again (``tries`` in all)."""
    for attempt in range(tries):
        try:
            return _read_state(Path(model_dir), mode)
        except UnlearnkitError:
            if attempt == tries - 1 or not (Path(model_dir) / "service").is_dir():
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _read_state(model_dir: Path, mode: str) -> DirectoryState:
    store = SnapshotStore(model_dir, mode)
    model, snap = store.load()
    events = read_events(store.root / LEDGER_FILE, {"format": FORMAT, **model.identity()})
    if len(events) < snap.ledger_seq:
        raise UnlearnkitError(
            f"the model snapshot in {model_dir} reflects ledger event {snap.ledger_seq} but the "
            f"ledger ends at {len(events)} (ledger lost or replaced)"
        )
    apply_events(model, events[snap.ledger_seq :], service_metrics())
    return DirectoryState(model, len(events), events)


class Writer:
    """Changes through the record; use as a context manager (a snapshot is written on a clean
    exit when anything changed; the lock is always released)."""

    def __init__(self, model_dir: Path, mode: str = "exact") -> None:
        self.store = SnapshotStore(Path(model_dir), mode)
        self.lock = WriterLock(self.store.root)
        self.changed = False

    def __enter__(self) -> Writer:
        self.lock.acquire("change the model")
        try:
            self.model, snap = self.store.load()
            self.ledger = Ledger(
                self.store.root / LEDGER_FILE,
                self.model.identity(),
                served=self.store.served_point(),
            )
            try:
                done = replay(self.model, self.ledger, snap.ledger_seq, service_metrics())
            except BaseException:
                self.ledger.close()
                raise
            self.applied_seq = done.applied_seq
            self.changed = done.events > 0 or (snap.name is None and done.applied_seq > 0)
        except BaseException:
            self.lock.release()
            raise
        return self

    def state(self) -> DirectoryState:
        return DirectoryState(self.model, self.applied_seq, self.ledger.after(0))

    def record(self, kind: str, payload: dict[str, Any]) -> Event:
        """Append one change, apply it, record its result; the finished event."""
        event, _ = self.ledger.append(kind, CLI_CLIENT, payload)
        rows = apply_group(self.model, [Change.from_event(event)], service_metrics())
        self.ledger.finish(rows)
        self.applied_seq = event.seq
        self.changed = True
        return self.ledger.get(event.request_id) or event

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None and self.changed:
                self.store.write(
                    self.model, self.applied_seq, self.ledger.link_at(self.applied_seq)
                )
        finally:
            self.ledger.close()
            self.lock.release()
