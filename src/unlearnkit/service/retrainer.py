"""Background retraining of dead shards (exact mode), one at a time, while predictions flow.

Each retrain is three explicit steps, and the model lock is held only for the first:

1. prepare, under the lock: ``model.prepare_retrain(shard)`` copies what training needs into
   a ``RetrainJob`` (milliseconds);
2. train, no lock held: ``job.train(job.inputs)`` in a niced child process with few threads
   (or in this thread), while the applier keeps applying deletions and predictions go on;
3. commit, in ledger order: a ``retrain`` event is recorded and queued to the applier, which
   swaps the trained blocks in under the lock. If a deletion reached the shard meanwhile the
   swap is refused (a failed event), the shard is still pending, and the next poll retrains it
   again, so a deletion that arrives mid-retrain is never undone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from unlearnkit.runtime.device import Runtime, install_worker_runtime
from unlearnkit.runtime.lifeline import die_with_parent
from unlearnkit.service.applier import Applier
from unlearnkit.service.config import ServiceConfig
from unlearnkit.service.model_lock import ModelLock
from unlearnkit.service.served import RetrainJob, ServedModel

log = logging.getLogger("unlearnkit.service")
SERVICE_CLIENT = "service"  # the ledger's client name for the service's own events


def _child_init(threads: int, niceness: int, runtime: Runtime | None = None) -> None:
    """The retrain child: dies with the server (a crashed server leaves no retrain running
    that nobody can commit), few threads and a lower CPU priority, so serving keeps its share;
    on the chosen device (``retrain_device``, else the serving one) with deterministic kernels."""
    die_with_parent()
    install_worker_runtime(runtime, threads)
    if niceness:
        os.nice(niceness)


def retrain_runtime(config: ServiceConfig) -> Runtime:
    """The retrain child's runtime: S3T exactness needs deterministic kernels on a GPU."""
    device = config.retrain_device or config.device
    return Runtime.create(device, config.precision, config.retrain_threads, deterministic=True)


class Retrainer:
    def __init__(
        self, config: ServiceConfig, model: ServedModel, lock: ModelLock, applier: Applier
    ) -> None:
        self._config, self._model, self._lock, self._applier = config, model, lock, applier
        self._runtime = retrain_runtime(config)  # a device that is not here fails at start-up
        self.in_progress: int | None = None  # the shard being retrained now
        self._pool: ProcessPoolExecutor | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unlearnkit-retrainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a retrain in flight is abandoned (it is redone at the next start)."""
        self._stop.set()

    def close(self) -> None:
        """After ``stop``: end the child process without waiting for its training."""
        if self._pool is None:
            return
        children = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for child in children:  # else interpreter exit waits for the retrain to finish
            child.terminate()

    def _run(self) -> None:
        if self._config.retrain_in_subprocess:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_init,
                initargs=(
                    self._config.retrain_threads,
                    self._config.retrain_nice,
                    self._runtime,
                ),
            )
        while not self._stop.wait(self._config.retrain_poll_s):
            with self._lock.reading():
                pending = self._model.pending_retrains()
            if not pending:
                continue
            shard = pending[0]
            self.in_progress = shard
            try:
                self._retrain(shard)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("background retrain of shard %d failed", shard)
                self._stop.wait(5.0)
            finally:
                self.in_progress = None

    def _retrain(self, shard: int) -> None:
        with self._lock.writing(in_place=False):  # 1. prepare (copies; no weights written)
            job = self._model.prepare_retrain(shard)
        start = time.perf_counter()
        result = self._train(job)  # 2. train, with the lock released
        if self._stop.is_set():
            return
        ticket = job.finish(result, time.perf_counter() - start)
        _, applied = self._applier.record(  # 3. commit, in ledger order, by the applier
            "retrain", SERVICE_CLIENT, {"shard": int(shard)}, ticket=ticket
        )
        while not applied.wait(0.5):
            if self._stop.is_set() or not self._applier.running:
                return

    def _train(self, job: RetrainJob) -> Any:
        if job.train is None:
            return None
        if self._pool is None:
            return job.train(job.inputs)
        return self._pool.submit(job.train, job.inputs).result()
