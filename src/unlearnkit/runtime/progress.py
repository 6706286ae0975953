"""Progress of long work, through one mechanism: library loops ``report``, a receiver shows it.

The training loop, the NTK Gram and the sharded precompute call ``report(what, done, total)``.
Nothing is shown by default (a library stays quiet in a user's program); ``reporting(fn)`` sets
the receiver for a block: the CLI's rich bars (or, without a terminal, a line now and then), or a
user's own callback in the Python API::

    from unlearnkit.runtime import reporting
    with reporting(lambda what, done, total: print(what, done, total)):
        run_experiment(cfg)

The receiver is a context variable: it follows the code of one thread; worker processes and
other threads report to nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ProgressFn = Callable[[str, int, int], None]  # (what, done, total)

_receiver: ContextVar[ProgressFn | None] = ContextVar("unlearnkit_progress", default=None)


@contextmanager
def reporting(receiver: ProgressFn | None) -> Iterator[None]:
    """Send the progress of everything run in this block to ``receiver`` (None: to nobody)."""
    token = _receiver.set(receiver)
    try:
        yield
    finally:
        _receiver.reset(token)


def report(what: str, done: int, total: int) -> None:
    """``done`` of ``total`` units of ``what`` are finished (a no-op when nobody listens)."""
    receiver = _receiver.get()
    if receiver is not None:
        receiver(what, done, total)
