"""The one lock around the served model, fair to changes.

Predictions share module state (the ensemble switches adapters on one backbone), so they run
one at a time, as do changes. A change waiting for the lock holds a turnstile that new
predictions must pass, so a deletion waits for at most the prediction already running rather
than for every prediction that arrives meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModelLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # the model: predictions and changes
        self._turnstile = threading.Lock()  # a waiting change goes before new predictions

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the model to change or copy it; new predictions wait behind this one."""
        with self._turnstile:
            self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the model to read it (a prediction, the status)."""
        with self._turnstile:
            pass
        with self._lock:
            yield
