"""When to snapshot the served model, and writing the snapshot off the applier's thread.

The applier tells the snapshotter after every batch (``after_batch``) and when it is idle
(``when_idle``): at those moments the model reflects exactly ``applied_seq``. A snapshot is due
after ``snapshot_every`` deletions, after a retrain swap, or after ``snapshot_interval_s`` idle
with unsaved changes. A due snapshot copies the model under the model lock (fast) and hands the
copy to the writer thread (slow: files, fsync), so changes and predictions do not wait for the
disk. A failed snapshot is logged and tried again later: the ledger still holds everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from unlearnkit.service.config import ServiceConfig
from unlearnkit.service.metrics import MetricSet
from unlearnkit.service.model_lock import ModelLock
from unlearnkit.service.served import ServedModel, SnapshotCopy
from unlearnkit.service.snapshots import SnapshotStore

log = logging.getLogger("unlearnkit.service")


class Snapshotter:
    def __init__(
        self,
        config: ServiceConfig,
        store: SnapshotStore,
        model: ServedModel,
        lock: ModelLock,
        metrics: MetricSet,
        snapshot_seq: int,
        link_of: Callable[[int], str | None] = lambda seq: None,
    ) -> None:
        """``link_of(seq)``: the ledger's chain link of event ``seq``, recorded with each
        snapshot so that start-up can tell the ledger reaches it."""
        self._config, self._store, self._model = config, store, model
        self._link_of = link_of
        self._lock, self._metrics = lock, metrics
        self.snapshot_seq = snapshot_seq  # the ledger event the newest snapshot reflects
        self._since, self._last = 0, time.monotonic()  # deletions / time since it was taken
        self._slot: tuple[SnapshotCopy, int, str | None] | None = (
            None  # a copy waiting to be written
        )
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="unlearnkit-snapshotter", daemon=True
        )

    # -- called by the applier thread, between batches ---------------------------------------
    def after_batch(self, applied_seq: int, deletions: int, force: bool) -> None:
        self._since += deletions
        self._consider(applied_seq, force=force)

    def when_idle(self, applied_seq: int) -> None:
        self._consider(applied_seq, idle=True)

    def _consider(self, applied_seq: int, force: bool = False, idle: bool = False) -> None:
        if applied_seq == self.snapshot_seq:
            return
        due = (
            force
            or self._since >= self._config.snapshot_every
            or (idle and time.monotonic() - self._last >= self._config.snapshot_interval_s)
        )
        if not due:
            return
        try:
            link = self._link_of(applied_seq)
            with self._lock.writing(in_place=False):  # a copy: forward passes go on
                frozen = self._model.snapshot_copy()
        except Exception:  # the ledger still holds everything: log, retry at the next chance
            log.exception("cannot copy the model for a snapshot")
            self._since, self._last = 0, time.monotonic()
            return
        self.snapshot_seq = applied_seq
        self._since, self._last = 0, time.monotonic()
        with self._cv:
            self._slot = (frozen, applied_seq, link)
            self._cv.notify()

    # -- synchronous writes (start-up, shutdown) ---------------------------------------------
    def write_now(self, applied_seq: int) -> None:
        """Snapshot the model as it is (no other thread may change it meanwhile)."""
        with self._lock.writing():
            self._store.write(self._model, applied_seq, self._link_of(applied_seq))
        self.snapshot_seq = applied_seq
        self._metrics.inc("unlearnkit_snapshots_total")

    # -- the writer thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Write the copy still waiting, if any, then end the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._slot is None and not self._stopping:
                    self._cv.wait(0.5)
                job, self._slot = self._slot, None
            if job is not None:
                try:
                    self._store.write(*job)
                    self._metrics.inc("unlearnkit_snapshots_total")
                except Exception:  # the ledger still holds everything: log and go on
                    log.exception("snapshot at ledger event %d failed", job[1])
            elif self._stopping:
                return
