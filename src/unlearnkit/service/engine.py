"""The deletion service's core, independent of HTTP: ledger + served model + worker threads.

Order of events is the ledger's sequence order everywhere. A deletion is written durably
(``Ledger.append``) and queued in the same critical section, so the single applier thread sees
events in sequence order; it applies a batch under the model lock, records the results in one
transaction, and only then wakes the waiting requests. Snapshots are taken by the applier
between batches (when the model reflects exactly the finished events) and written by another
thread. Dead shards are retrained by a third thread whose training runs with the model lock
released; the swap is itself a ledger event, applied in order by the applier.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from unlearnkit.errors import ConflictError, NotFoundError, UnlearnkitError
from unlearnkit.service.auth import Principal
from unlearnkit.service.config import ServiceConfig
from unlearnkit.service.ledger import Event, Ledger, payload_hash
from unlearnkit.service.metrics import Registry, service_metrics
from unlearnkit.service.served import ServedModel
from unlearnkit.service.snapshots import SnapshotStore

log = logging.getLogger("unlearnkit.service")
SERVICE_CLIENT = "service"


@dataclass
class _Item:
    seq: int
    kind: str
    sample_ids: list[int] = field(default_factory=list)
    ticket: Any = None
    accepted_at: float = 0.0


def _subprocess_init(threads: int, niceness: int) -> None:
    """The retrain child: few threads and a lower CPU priority, so serving keeps its share."""
    torch.set_num_threads(threads)
    if niceness:
        os.nice(niceness)


class DeletionService:
    """Open with ``start()``; stop with ``close()`` (writes a final snapshot)."""

    def __init__(self, config: ServiceConfig, metrics: Registry | None = None) -> None:
        self.config = config
        self.metrics = metrics or service_metrics()
        self.store = SnapshotStore(config.model_dir, config.mode, {"config": config})
        self._lock = threading.Lock()  # the model: predictions and changes
        self._turnstile = threading.Lock()  # a waiting change goes before new predictions
        self._accept_lock = threading.Lock()  # claim check + ledger append
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._done: dict[int, threading.Event] = {}
        self._done_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._snap_slot: tuple[ServedModel, int] | None = None
        self._snap_cv = threading.Condition()
        self._pool: Any = None
        self.retrain_inflight: int | None = None
        self.started = False

    # -- start-up ----------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model, check the ledger, replay what the snapshot lacks, start workers."""
        torch.set_num_threads(self.config.torch_threads)
        self.model, snap = self.store.load()
        self.ledger = Ledger(self.store.root / "ledger.sqlite3", self.model.identity())
        last = self.ledger.last_seq()
        if snap.ledger_seq > last:
            raise UnlearnkitError(
                f"the model snapshot reflects ledger event {snap.ledger_seq} but the ledger "
                f"ends at {last} (ledger lost or replaced); refusing to start"
            )
        self.applied_seq = snap.ledger_seq
        replayed = self._replay(self.ledger.after(snap.ledger_seq))
        if replayed or snap.name is None:
            self.store.write(self.model, self.applied_seq)
            self.metrics.inc("unlearnkit_snapshots_total")
        self.snapshot_seq = self.applied_seq
        self._since_snapshot, self._last_snapshot = 0, time.monotonic()
        self._claimed = self.ledger.claimed_ids()
        self.replayed = replayed
        self._update_gauges()
        self._spawn(self._applier, "applier")
        self._spawn(self._snapshotter, "snapshotter")
        if self.config.background_retrain:
            self._spawn(self._retrainer, "retrainer")
        self.started = True
        log.info(
            "serving %s model v%d (ledger at %d, replayed %d events)",
            self.config.mode,
            self.model.version,
            self.applied_seq,
            replayed,
        )

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The model lock for a change: holding the turnstile while waiting stops new
        predictions from overtaking, so a deletion waits for at most the prediction running."""
        with self._turnstile:
            self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The model lock for a prediction (they share module state, so one at a time)."""
        with self._turnstile:
            pass
        with self._lock:
            yield

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=f"unlearnkit-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _replay(self, events: list[Event]) -> int:
        """Apply, in order, every event after the snapshot that did not fail."""
        results = []
        for group in self._groups([e for e in events if e.status != "failed"]):
            items = [
                _Item(
                    e.seq,
                    e.kind,
                    [int(i) for i in e.payload.get("sample_ids", [])],
                    ticket=e.payload.get("shard"),
                    accepted_at=e.accepted_at,
                )
                for e in group
            ]
            outcome = self._apply_group(items, replay=True)
            results += [r for r, e in zip(outcome, group, strict=True) if e.status == "accepted"]
            self.applied_seq = group[-1].seq
        if results:
            self.ledger.finish(results)
        return len(events)

    def _groups(self, events: Sequence[Any]) -> list[list[Any]]:
        """Consecutive deletions form one group when the model batches them (approximate)."""
        groups: list[list[Any]] = []
        batch = getattr(self.model, "batches_deletions", False)
        for e in events:
            if batch and groups and e.kind == "deletion" and groups[-1][-1].kind == "deletion":
                groups[-1].append(e)
            else:
                groups.append([e])
        return groups

    # -- applying ----------------------------------------------------------------------------
    def _apply_group(
        self, items: list[_Item], replay: bool = False
    ) -> list[tuple[int, str, dict[str, Any] | None, str | None]]:
        """Apply one group (caller holds the model lock or runs alone); ledger result rows."""
        before = self.model.version
        started = time.time()
        try:
            if items[0].kind == "retrain":
                shard = items[0].ticket if replay else items[0].ticket.shard
                change = (
                    self.model.retrain(int(shard))
                    if replay
                    else self.model.commit_retrain(items[0].ticket)
                )
                self.metrics.inc("unlearnkit_retrains_total")
            else:
                ids = [i for it in items for i in it.sample_ids]
                change = self.model.apply_deletions(ids)
        except (UnlearnkitError, ValueError) as exc:
            return [(it.seq, "failed", None, str(exc)) for it in items]
        except Exception as exc:  # a bug must not stop the applier: record it and go on
            log.exception("applying ledger events %s failed", [it.seq for it in items])
            return [(it.seq, "failed", None, f"internal error: {exc!r}") for it in items]
        rows = []
        for it in items:
            receipt = {
                "change": change,
                "model_version_before": before,
                "model_version_after": self.model.version,
                "accepted_at": it.accepted_at,
                "apply_started_at": started,
                "applied_at": time.time(),
                "replayed": replay,
            }
            rows.append((it.seq, "applied", receipt, None))
        return rows

    def _applier(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.25)
            except queue.Empty:
                self._maybe_snapshot(idle=True)
                continue
            if first is None:
                return
            items = [first]
            rows = []
            retrained = False
            with self._writing():  # drain after taking the lock: what queued meanwhile joins in
                self._drain(items)
                for group in self._groups(items):
                    rows += self._apply_group(group)
                    retrained |= group[0].kind == "retrain"
                self.applied_seq = items[-1].seq
            try:
                self.ledger.finish(rows)
            except Exception:  # the ledger is unusable: stop serving changes rather than lie
                log.exception("cannot record applied events; stopping the applier")
                return
            self._count(items, rows)
            self._update_gauges()
            with self._done_lock:
                for it in items:
                    ev = self._done.pop(it.seq, None)
                    if ev is not None:
                        ev.set()
            self._since_snapshot += sum(it.kind == "deletion" for it in items)
            self._maybe_snapshot(force=retrained)

    def _drain(self, items: list[_Item], limit: int = 512) -> None:
        """Add what is queued now (up to ``limit`` items), leaving the stop sentinel queued."""
        while len(items) < limit:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return
            if nxt is None:
                self._queue.put(None)
                return
            items.append(nxt)

    def _count(self, items: list[_Item], rows: list[tuple[Any, ...]]) -> None:
        for it, row in zip(items, rows, strict=True):
            if it.kind != "deletion":
                continue
            if row[1] == "applied":
                self.metrics.inc("unlearnkit_deletions_applied_total")
                self.metrics.inc("unlearnkit_samples_deleted_total", len(it.sample_ids))
            else:
                self.metrics.inc("unlearnkit_deletions_failed_total")
                with self._accept_lock:  # a failed deletion releases its ids
                    for i in it.sample_ids:
                        self._claimed.pop(i, None)

    def _update_gauges(self) -> None:
        self.metrics.set("unlearnkit_model_version", self.model.version)
        live = getattr(self.model, "live_shard_count", None)
        if live is not None:
            self.metrics.set("unlearnkit_live_shards", live())

    # -- snapshots ---------------------------------------------------------------------------
    def _maybe_snapshot(self, force: bool = False, idle: bool = False) -> None:
        """Called by the applier only, between batches: the model reflects ``applied_seq``."""
        if self.applied_seq == self.snapshot_seq:
            return
        due = (
            force
            or self._since_snapshot >= self.config.snapshot_every
            or (idle and time.monotonic() - self._last_snapshot >= self.config.snapshot_interval_s)
        )
        if not due:
            return
        try:
            with self._writing():
                frozen, seq = self.model.clone(), self.applied_seq
        except Exception:  # the ledger still holds everything: log, retry at the next chance
            log.exception("cannot copy the model for a snapshot")
            self._since_snapshot, self._last_snapshot = 0, time.monotonic()
            return
        self.snapshot_seq = seq
        self._since_snapshot, self._last_snapshot = 0, time.monotonic()
        with self._snap_cv:
            self._snap_slot = (frozen, seq)
            self._snap_cv.notify()

    def _snapshotter(self) -> None:
        while True:
            with self._snap_cv:
                while self._snap_slot is None and not self._stop.is_set():
                    self._snap_cv.wait(0.5)
                job, self._snap_slot = self._snap_slot, None
            if job is not None:
                try:
                    self.store.write(*job)
                    self.metrics.inc("unlearnkit_snapshots_total")
                except Exception:  # the ledger still holds everything: log and go on
                    log.exception("snapshot at ledger event %d failed", job[1])
            elif self._stop.is_set():
                return

    # -- background retraining ---------------------------------------------------------------
    def _run_unlocked(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Run retrain jobs with the model lock released (the job holds a copy of its data)."""
        self._lock.release()
        try:
            if self._pool is None:
                return [fn(item) for item in items]
            return list(self._pool.map(fn, items))
        finally:
            self._lock.acquire()

    def _retrainer(self) -> None:
        if self.config.retrain_in_subprocess:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_subprocess_init,
                initargs=(1, self.config.retrain_nice),
            )
        while not self._stop.wait(self.config.retrain_poll_s):
            with self._lock:
                pending = self.model.pending_retrains()
            if not pending:
                continue
            shard = pending[0]
            self.retrain_inflight = shard
            try:
                with self._writing():
                    ticket = self.model.prepare_retrain(shard, self._run_unlocked)
                if self._stop.is_set():
                    return
                waiter = threading.Event()

                def enqueue(ev: Event, t: Any = ticket, w: threading.Event = waiter) -> None:
                    with self._done_lock:
                        self._done[ev.seq] = w
                    self._queue.put(_Item(ev.seq, "retrain", ticket=t, accepted_at=ev.accepted_at))

                self.ledger.append(
                    "retrain", SERVICE_CLIENT, {"shard": int(shard)}, on_commit=enqueue
                )
                while not waiter.wait(0.5):  # the swap is applied in ledger order
                    if self._stop.is_set():
                        return
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("background retrain of shard %d failed", shard)
                self._stop.wait(5.0)
            finally:
                self.retrain_inflight = None

    # -- requests ----------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        with self._reading():
            logits = self.model.predict_logits(x)
            version = self.model.version
        return torch.softmax(logits.float(), dim=1), version

    def check_ids(self, ids: list[int]) -> list[int]:
        if not ids:
            raise UnlearnkitError("sample_ids is empty")
        if len(ids) > self.config.max_delete_ids:
            raise UnlearnkitError(
                f"sample_ids has {len(ids)} ids; at most {self.config.max_delete_ids} per request"
            )
        seen: set[int] = set()
        for i in ids:
            if i in seen:
                raise UnlearnkitError(f"sample id {i} is listed twice")
            seen.add(i)
            if not self.model.known(i):
                raise NotFoundError(f"sample id {i} is not in the training set of this model")
        return sorted(ids)

    def submit_deletion(
        self, who: Principal, ids: list[int], key: str | None
    ) -> tuple[Event, bool]:
        """Durably accept a deletion (then, in exact mode, wait until it is applied)."""
        ids = self.check_ids(ids)
        payload = {"sample_ids": ids}
        waiter = threading.Event()
        with self._accept_lock:
            if key is not None:
                old = self.ledger.find(who.name, key)
                if old is not None:
                    if old.request_hash != payload_hash(payload):
                        raise ConflictError(
                            f"Idempotency-Key {key!r} was already used for a different request"
                        )
                    return old, False
            for i in ids:
                if i in self._claimed:
                    raise ConflictError(
                        f"sample id {i} is already deleted (request {self._claimed[i]})"
                    )

            def enqueue(ev: Event) -> None:
                with self._done_lock:
                    self._done[ev.seq] = waiter
                self._queue.put(_Item(ev.seq, "deletion", ids, accepted_at=ev.accepted_at))

            event, _ = self.ledger.append("deletion", who.name, payload, key, on_commit=enqueue)
            for i in ids:
                self._claimed[i] = event.request_id
        self.metrics.inc("unlearnkit_deletions_accepted_total")
        if self.model.applies_immediately:
            waiter.wait(self.config.apply_timeout_s)
            return self.ledger.get(event.request_id) or event, True
        return event, True

    def get_deletion(self, request_id: str) -> Event:
        event = self.ledger.get(request_id)
        if event is None or event.kind != "deletion":
            raise NotFoundError(f"deletion request {request_id!r} does not exist")
        return event

    def model_status(self) -> dict[str, Any]:
        with self._reading():
            status = self.model.status()
            version = self.model.version
        deferred = status.pop("_deferred", None)
        if deferred is not None:  # the slow parts, on copies, without the model lock
            for key, value in deferred().items():
                status[key] = {**status.get(key, {}), **value}
        counts = self.ledger.counts()
        pending = status.get("retrains_pending") or []
        return {
            "mode": self.config.mode,
            "version": version,
            **status,
            "retrain_in_progress": self.retrain_inflight,
            "retrains_pending": pending,
            "ledger": {
                "last_seq": self.ledger.last_seq(),
                "applied_seq": self.applied_seq,
                "snapshot_seq": self.snapshot_seq,
                "events": counts,
            },
        }

    # -- shutdown ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers, write a final snapshot, close the ledger."""
        if not self.started:
            return
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            if thread.name.endswith("applier"):
                thread.join(timeout=30)
        with self._snap_cv:
            self._snap_cv.notify_all()
        for thread in self._threads:
            if thread.name.endswith("snapshotter"):
                thread.join(timeout=60)
        if self.applied_seq != self.snapshot_seq:  # after the snapshotter: never go backwards
            with self._lock:
                self.store.write(self.model, self.applied_seq)
            self.snapshot_seq = self.applied_seq
        if self._pool is not None:  # a retrain in flight is abandoned (redone at next start)
            children = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for child in children:  # else interpreter exit waits for the retrain to finish
                child.terminate()
        self.ledger.close()
        self.started = False
