"""The locks around the served model: short holds for its bookkeeping, fair to changes.

Two locks, so that a deletion never waits for a forward pass:

- the *state* lock guards the model's bookkeeping (which blocks serve, the version, the
  ledger position it reflects). A prediction holds it only to take a view; a deletion that
  switches blocks off, a snapshot copy and the status hold it for their (short) work.
- the *modules* lock guards the network itself, for models whose forward passes switch shared
  module state (``ServedModel.shares_modules``): those passes run one at a time under it. A
  change that writes weights in place (a retrain swapped in) holds both: it waits for the pass
  in flight, and a waiting one holds a turnstile that new passes must clear, so it waits for at
  most that pass. Each such change bumps ``weights_epoch``; a view taken before it is taken
  again (see ``DeletionService.predict``).

Order: modules before state, always; a holder of the state lock never asks for modules.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModelLock:
    def __init__(self) -> None:
        self._state = threading.Lock()
        self._modules = threading.Lock()
        self._turnstile = threading.Lock()  # a waiting in-place change goes before new passes
        self.weights_epoch = 0  # in-place changes so far (read under either lock)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the bookkeeping: take a view, the status, what is pending."""
        with self._state:
            yield

    @contextmanager
    def writing(self, in_place: bool = True) -> Iterator[None]:
        """Hold the model to change or copy it. ``in_place=False``: a change to bookkeeping only
        (switching blocks off, copying for a snapshot), which waits for no forward pass."""
        if not in_place:
            with self._state:
                yield
            return
        with self._turnstile:
            self._modules.acquire()
        try:
            with self._state:
                self.weights_epoch += 1
                yield
        finally:
            self._modules.release()

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Hold the network for one forward pass of a model that shares modules."""
        with self._turnstile:
            pass
        with self._modules:
            yield
