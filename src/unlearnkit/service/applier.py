"""The applier: the one thread that changes the served model, in ledger order.

``record`` writes an event to the ledger and queues it here in the same critical section (the
ledger's ``on_commit``), so the queue holds events in sequence order. The thread takes what is
queued, applies it in groups under the model lock (``changes.apply_group``), records every
result in one ledger transaction, and only then wakes the requests waiting on those events.
Between batches it lets the snapshotter copy the model, which then reflects exactly
``applied_seq``.

If the results cannot be recorded (the ledger broke), the model has changed ahead of the ledger:
the applier stops rather than go on changing it unrecorded, wakes every waiter, and ``failure``
says why; the service then refuses changes (``InternalError``) until it is restarted, when the
ledger is replayed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from unlearnkit.errors import InternalError
from unlearnkit.service.changes import Change, ResultRow, apply_group, group_changes
from unlearnkit.service.ledger import Event, Ledger, LedgerWriteError
from unlearnkit.service.metrics import MetricSet
from unlearnkit.service.model_lock import ModelLock
from unlearnkit.service.served import ServedModel
from unlearnkit.service.snapshotter import Snapshotter
from unlearnkit.service.status import update_gauges

log = logging.getLogger("unlearnkit.service")
BATCH_LIMIT = 512  # most events applied under one hold of the model lock
FINISH_RETRY_S = 0.2  # first wait before recording results again (disk full), doubling to 5 s


class Applied(threading.Event):
    """Set once an event is applied (or the applier stopped). ``phases`` (seconds) says where
    the wait went: ``queue`` (behind earlier batches), ``lock`` (for the prediction in flight),
    ``apply`` (changing the model), ``record`` (writing the results to the ledger)."""

    def __init__(self) -> None:
        super().__init__()
        self.queued_at = time.perf_counter()
        self.phases: dict[str, float] = {}


class Applier:
    def __init__(
        self,
        model: ServedModel,
        ledger: Ledger,
        lock: ModelLock,
        metrics: MetricSet,
        snapshotter: Snapshotter,
        applied_seq: int,
        release_ids: Callable[[list[int]], None],
    ) -> None:
        """``release_ids(ids)`` frees the ids of a failed deletion (``intake.Claims.release``)."""
        self._model, self._ledger, self._lock = model, ledger, lock
        self._metrics, self._snapshotter, self._release_ids = metrics, snapshotter, release_ids
        self.applied_seq = applied_seq  # the last event the model reflects
        self.failure: str | None = None  # why the applier stopped, if it did
        self._queue: queue.Queue[Change | None] = queue.Queue()
        self._held: Change | None = None  # taken from the queue by a drain, applied next
        self._waiters: dict[int, Applied] = {}
        self._waiters_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unlearnkit-applier", daemon=True)

    # -- producers ---------------------------------------------------------------------------
    def record(
        self,
        kind: str,
        client: str,
        payload: dict[str, Any],
        key: str | None = None,
        ticket: Any = None,
    ) -> tuple[Event, Applied]:
        """Write an event and queue it; the returned flag is set once it is applied (or the
        applier stopped). Refused, with nothing written, once the applier has stopped."""
        if self.failure is not None:
            raise InternalError(f"{self.failure}; restart the service (it replays the ledger)")
        applied = Applied()

        def enqueue(event: Event) -> None:  # under the ledger lock: in sequence order
            with self._waiters_lock:
                self._waiters[event.seq] = applied
            self._queue.put(Change.from_event(event, ticket))

        event, _ = self._ledger.append(kind, client, payload, key, on_commit=enqueue)
        return event, applied

    def pending(self, seq: int) -> Applied | None:
        """The flag of event ``seq`` while it waits to be applied (None once applied)."""
        with self._waiters_lock:
            return self._waiters.get(seq)

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread (a results write still being retried
        gets one last try)."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.failure is None

    def _take(self) -> Change | None:
        """The change held back by the last drain, else the next queued one (waits 0.25 s)."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        return self._queue.get(timeout=0.25)

    def _run(self) -> None:
        while True:
            try:
                first = self._take()
            except queue.Empty:
                self._snapshotter.when_idle(self.applied_seq)
                continue
            if first is None:
                return
            batch = [first]
            rows: list[ResultRow] = []
            in_place = first.kind in self._model.in_place_changes
            asked = time.perf_counter()
            with self._lock.writing(in_place):  # deletions: bookkeeping only, no forward waits
                locked = time.perf_counter()
                self._drain(batch, in_place)  # what queued meanwhile joins
                for group in group_changes(self._model, batch):
                    rows += apply_group(self._model, group, self._metrics)
                self.applied_seq = batch[-1].seq
            applied = time.perf_counter()
            try:
                self._finish(rows)
            except Exception as exc:  # the ledger is unusable: stop changing the model
                log.exception("cannot record applied events; stopping the applier")
                self.failure = f"the applier stopped: applied changes could not be recorded ({exc})"
                with self._waiters_lock:
                    self._wake(list(self._waiters))
                return
            self._count(batch, rows)
            update_gauges(self._metrics, self._model)
            with self._waiters_lock:
                self._wake([c.seq for c in batch], (asked, locked, applied, time.perf_counter()))
            self._snapshotter.after_batch(
                self.applied_seq,
                deletions=sum(c.kind == "deletion" for c in batch),
                force=any(c.kind == "retrain" for c in batch),
            )

    def _finish(self, rows: list[ResultRow]) -> None:
        """Record results; while the disk is full or read-only, retry (the model lock is not
        held, so predictions go on; new deletions are refused with a 503 meanwhile) until it
        works or the service stops."""
        delay = FINISH_RETRY_S
        while True:
            try:
                self._ledger.finish(rows)
                return
            except LedgerWriteError as exc:
                if self._stopping.is_set():
                    raise
                log.warning("cannot record applied events yet, retrying in %.1f s: %s", delay, exc)
            if self._stopping.wait(delay):
                self._ledger.finish(rows)  # a last try; its failure stops the applier
                return
            delay = min(delay * 2, 5.0)

    def _drain(self, batch: list[Change], in_place: bool) -> None:
        """Add what is queued now (up to ``BATCH_LIMIT``), leaving the stop sentinel queued. A
        change that writes weights in place, met while only the bookkeeping is held, is held
        back for the next batch (it must wait for the forward pass in flight)."""
        while len(batch) < BATCH_LIMIT:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return
            if nxt is None:
                self._queue.put(None)
                return
            if not in_place and nxt.kind in self._model.in_place_changes:
                self._held = nxt
                return
            batch.append(nxt)

    def _count(self, batch: list[Change], rows: list[ResultRow]) -> None:
        for change, row in zip(batch, rows, strict=True):
            if change.kind != "deletion":
                continue
            if row[1] == "applied":
                self._metrics.inc("unlearnkit_deletions_applied_total")
                self._metrics.inc("unlearnkit_samples_deleted_total", len(change.sample_ids))
            else:
                self._metrics.inc("unlearnkit_deletions_failed_total")
                self._release_ids(change.sample_ids)  # a failed deletion frees its ids

    def _wake(
        self, seqs: list[int], times: tuple[float, float, float, float] | None = None
    ) -> None:
        """Set the flags of these events (the caller holds the waiters' lock); ``times``: when
        the batch asked for the lock, got it, was applied and was recorded."""
        for seq in seqs:
            flag = self._waiters.pop(seq, None)
            if flag is None:
                continue
            if times is not None:
                asked, locked, applied, recorded = times
                start = min(max(flag.queued_at, asked), locked)  # drained items queued later
                flag.phases = {
                    "queue": max(start - flag.queued_at, 0.0),
                    "lock": locked - start,
                    "apply": applied - locked,
                    "record": recorded - applied,
                }
            flag.set()
