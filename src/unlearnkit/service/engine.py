"""The deletion service's core, independent of HTTP: a coordinator over parts with one job each.

- ``SnapshotStore`` (snapshots): load the newest snapshot, or the base model; write snapshots.
- ``Ledger`` (ledger): the SQLite source of truth; ``replay`` brings the snapshot up to it.
- ``check_sample_ids`` / ``Intake`` (intake): validate, deduplicate and durably accept deletions.
- ``Applier`` (applier): the one thread that changes the model, in ledger order.
- ``Snapshotter`` (snapshotter): when to snapshot; writes off the applier's thread.
- ``Retrainer`` (retrainer): retrains dead shards with the model lock released meanwhile.
- ``ModelLock`` (model_lock): short holds for bookkeeping; forward passes never block a deletion.
- ``model_status`` (status): ``GET /v1/model``.

``DeletionService`` builds them in ``start()`` and stops them in ``close()``; requests go
through its methods (``predict``, ``submit_deletion``, ``get_deletion``, ``model_status``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from unlearnkit.errors import ConflictError, InternalError, NotFoundError
from unlearnkit.runtime.device import Runtime
from unlearnkit.service.applier import Applier
from unlearnkit.service.auth import Principal
from unlearnkit.service.batching import MicroBatcher
from unlearnkit.service.config import ServiceConfig
from unlearnkit.service.intake import Claims, Intake, check_sample_ids
from unlearnkit.service.ledger import Event, Ledger
from unlearnkit.service.metrics import MetricSet, service_metrics
from unlearnkit.service.model_lock import ModelLock
from unlearnkit.service.replay import replay
from unlearnkit.service.retrainer import Retrainer
from unlearnkit.service.served import ServedModel
from unlearnkit.service.snapshots import SnapshotStore
from unlearnkit.service.snapshotter import Snapshotter
from unlearnkit.service.status import model_status, update_gauges
from unlearnkit.service.writer_lock import WriterLock

log = logging.getLogger("unlearnkit.service")
LEDGER_FILE = "ledger.sqlite3"


class DeletionService:
    """Open with ``start()``; stop with ``close()`` (writes a final snapshot)."""

    model: ServedModel
    ledger: Ledger

    def __init__(self, config: ServiceConfig, metrics: MetricSet | None = None) -> None:
        self.config = config
        self.metrics = metrics or service_metrics()
        self.store = SnapshotStore(
            config.model_dir, config.mode, {"config": config}, group=config.group_readable
        )
        self.model_lock = ModelLock()
        # the directory's one writer, between processes (the CLI's `s3t delete` takes it too)
        self.writer = WriterLock(self.store.root, group=config.group_readable)
        self.batcher = MicroBatcher(config.batch_window_ms / 1000.0, config.max_batch)
        self.replayed = 0  # ledger events applied at start-up on top of the snapshot
        self.started = False

    # -- start-up ----------------------------------------------------------------------------
    def start(self) -> None:
        """Take the directory's writer lock, then ``_start`` (released again if that fails)."""
        self.writer.acquire("start the service")
        try:
            self._start()
        except BaseException:
            self.writer.release()
            raise

    def _start(self) -> None:
        """Load the model, check the ledger, replay what the snapshot lacks, start workers."""
        cfg = self.config  # one runtime for serving: device, autocast, threads
        Runtime.create(cfg.device, cfg.precision, cfg.torch_threads).activate()
        self.model, snap = self.store.load()
        self.ledger = Ledger(
            self.store.root / LEDGER_FILE,
            self.model.identity(),
            mark_path=self.config.ledger_mark,
            served=self.store.served_point(),
            group=self.config.group_readable,
            reset_mark=self.config.reset_ledger_mark,
        )
        done = replay(self.model, self.ledger, snap.ledger_seq, self.metrics)
        self.replayed = done.events
        self.snapshotter = Snapshotter(
            self.config,
            self.store,
            self.model,
            self.model_lock,
            self.metrics,
            snap.ledger_seq,
            link_of=self.ledger.link_at,
        )
        if done.events or snap.name is None:
            self.snapshotter.write_now(done.applied_seq)
        claims = Claims(self.ledger.claimed_ids())
        self.applier = Applier(
            self.model,
            self.ledger,
            self.model_lock,
            self.metrics,
            self.snapshotter,
            done.applied_seq,
            release_ids=claims.release,
        )
        self.intake = Intake(self.ledger, self.applier, claims)
        self.retrainer = Retrainer(self.config, self.model, self.model_lock, self.applier)
        update_gauges(self.metrics, self.model)
        self.applier.start()
        self.snapshotter.start()
        if self.config.background_retrain:
            self.retrainer.start()
        self.started = True
        log.info(
            "serving %s model v%d (ledger at %d, replayed %d events)",
            self.config.mode,
            self.model.version,
            self.applied_seq,
            self.replayed,
        )

    # -- where it stands ---------------------------------------------------------------------
    @property
    def applied_seq(self) -> int:
        """The last ledger event the served model reflects."""
        return self.applier.applied_seq

    @property
    def snapshot_seq(self) -> int:
        """The ledger event the newest snapshot reflects."""
        return self.snapshotter.snapshot_seq

    @property
    def retrain_inflight(self) -> int | None:
        return self.retrainer.in_progress

    @property
    def failure(self) -> str | None:
        """Why the service can no longer record changes (None while it can)."""
        if not self.started:
            return "the service is not running"
        return self.ledger.broken or self.applier.failure

    # -- requests ----------------------------------------------------------------------------
    def predict(
        self, x: torch.Tensor, timings: dict[str, float] | None = None
    ) -> tuple[torch.Tensor, int]:
        """Probabilities and the model version that gave them. The view is taken under the
        state lock (microseconds); the forward pass runs outside it (under the modules lock
        when the model shares modules), so deletions do not wait for it. ``timings`` (if
        given) gets the seconds spent waiting for the locks and in the model."""
        lock, model = self.model_lock, self.model
        asked = time.perf_counter()
        with lock.reading():
            view, epoch = model.view(), lock.weights_epoch
        if model.shares_modules:
            with lock.forward():
                locked = time.perf_counter()
                if lock.weights_epoch != epoch:  # weights were written since: a fresh view
                    with lock.reading():
                        view = model.view()
                logits = view.logits(x)
        elif view.batch_key is not None:  # an immutable view: concurrent requests share passes
            locked = time.perf_counter()
            logits = self.batcher.run(view.batch_key, view.logits, x)
        else:
            locked = time.perf_counter()
            logits = view.logits(x)
        if timings is not None:
            timings.update(lock=locked - asked, model=time.perf_counter() - locked)
        return torch.softmax(logits.float(), dim=1), view.version

    def check_ids(self, ids: list[int]) -> list[int]:
        return check_sample_ids(self.model, ids, self.config.max_delete_ids)

    def submit_deletion(
        self,
        who: Principal,
        ids: list[int],
        key: str | None,
        timings: dict[str, float] | None = None,
    ) -> tuple[Event, bool]:
        """Durably accept a deletion (then, in exact mode, wait until it is applied); the event
        and whether it is new (False: the Idempotency-Key was known). ``timings`` (if given)
        gets the seconds of each phase: accept (ledger write), then the applier's phases."""
        started = time.perf_counter()
        if not self.model.deletes_online:  # refused before the ledger: nothing is recorded
            raise ConflictError(self.model.refusal)
        ids = self.check_ids(ids)
        event, applied = self.intake.accept(who, ids, key)
        if timings is not None:
            timings["accept"] = time.perf_counter() - started
        if applied is None:  # a repeat: answered as the original is (applied, with receipt)
            if self.model.applies_immediately and event.status == "accepted":
                applied = self.applier.pending(event.seq)
                if applied is not None:
                    applied.wait(self.config.apply_timeout_s)
                event = self.ledger.get(event.request_id) or event
            return event, False
        self.metrics.inc("unlearnkit_deletions_accepted_total")
        if not self.model.applies_immediately:
            return event, True
        applied.wait(self.config.apply_timeout_s)
        if timings is not None:
            timings.update(applied.phases)
        if self.applier.failure is not None:
            raise InternalError(
                f"deletion {event.request_id} is recorded but could not be applied: "
                f"{self.applier.failure}; restarting the service applies it"
            )
        return self.ledger.get(event.request_id) or event, True

    def get_deletion(self, request_id: str, who: Principal | None = None) -> Event:
        """The deletion request ``request_id``, if ``who`` made it or is an admin (a request
        of another client is "not found": its existence is not revealed either)."""
        event = self.ledger.get(request_id)
        foreign = who is not None and event is not None and event.client != who.name
        if event is None or event.kind != "deletion" or (foreign and "admin" not in who.scopes):
            raise NotFoundError(f"deletion request {request_id!r} does not exist")
        return event

    def model_status(self) -> dict[str, Any]:
        return {"failure": self.failure} | model_status(
            self.config.mode,
            self.model,
            self.model_lock,
            self.ledger,
            {"applied_seq": self.applied_seq, "snapshot_seq": self.snapshot_seq},
            self.retrain_inflight,
        )

    # -- shutdown ----------------------------------------------------------------------------
    def close(self, final_snapshot: bool = True) -> None:
        """Stop the workers, write a final snapshot, close the ledger. ``final_snapshot=False``
        leaves the disk as a crash would (the tests' way to crash)."""
        if not self.started:
            return
        self.retrainer.stop()
        self.applier.stop()
        self.snapshotter.stop()
        # after the snapshotter has finished (never go backwards), and not when the applier
        # failed: the model is then ahead of what the ledger records; a restart replays it
        unsaved = self.applied_seq != self.snapshot_seq
        if final_snapshot and unsaved and self.applier.failure is None:
            self.snapshotter.write_now(self.applied_seq)
        self.retrainer.close()
        self.ledger.close()
        self.writer.release()
        self.started = False
