"""Micro-batching: prediction requests that arrive within a short window share one forward pass.

The first request of a batch (its *leader*) waits ``window_s`` for others on the same model
version (the same ``ModelView.batch_key``), then runs the model once on all their inputs
concatenated and hands each request its rows. It waits only while another prediction is in
flight: a lone client's requests never pay the window. A request for another version, or one
that would push the batch past ``max_rows``, opens a new batch. ``window_s = 0`` switches it
off: each request runs its own pass, as before.

Why: a packed ensemble pass costs the shared trunk plus every shard's adapted part; under
concurrent traffic, one pass on 8 x 16 images costs far less than 8 passes on 16.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch


class _Batch:
    def __init__(self, key: Any) -> None:
        self.key = key
        self.inputs: list[torch.Tensor] = []
        self.rows = 0
        self.closed = False
        self.done = threading.Event()
        self.result: torch.Tensor | None = None
        self.error: BaseException | None = None

    def add(self, x: torch.Tensor) -> slice:
        start = self.rows
        self.inputs.append(x)
        self.rows += len(x)
        return slice(start, self.rows)


class MicroBatcher:
    def __init__(self, window_s: float, max_rows: int) -> None:
        self.window_s = float(window_s)
        self.max_rows = int(max_rows)
        self._lock = threading.Lock()
        self._open: _Batch | None = None
        self._inflight = 0  # requests inside run()
        self.passes = 0  # forward passes run (requests / passes = how much batching shared)

    def run(self, key: Any, logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
        """``logits(x)``, possibly computed in one pass with other requests for ``key``."""
        if self.window_s <= 0:
            self.passes += 1
            return logits(x)
        with self._lock:
            self._inflight += 1
            batch = self._open
            fits = batch is not None and batch.rows + len(x) <= self.max_rows
            leader = not (fits and batch.key is key and not batch.closed)
            if leader:
                batch = self._open = _Batch(key)
            rows = batch.add(x)
            company = self._inflight > 1
        try:
            return self._finish(batch, rows, leader, company, logits)
        finally:
            with self._lock:
                self._inflight -= 1

    def _finish(self, batch: _Batch, rows: slice, leader: bool, company: bool,
                logits: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:  # fmt: skip
        if leader:
            if company:  # others are predicting: give them the window to join
                time.sleep(self.window_s)
            with self._lock:
                batch.closed = True
                if self._open is batch:
                    self._open = None
            try:
                self.passes += 1
                batch.result = logits(torch.cat(batch.inputs))
            except BaseException as exc:  # every request of the batch gets the same failure
                batch.error = exc
            finally:
                batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.result[rows]
