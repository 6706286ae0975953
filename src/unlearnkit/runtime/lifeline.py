"""Worker processes that die with their parent.

A spawned worker (a process-pool worker, the service's retrain child) whose parent is killed
with SIGKILL is re-parented and would otherwise run on: a retrain nobody will commit, memory
held for hours. ``die_with_parent`` starts a daemon thread in the worker that watches the
parent's pid and ends the worker (``os._exit``) within ``poll_s`` of the parent's death. A
thread rather than Linux's ``PR_SET_PDEATHSIG``: that signal fires when the *thread* that
spawned the worker ends, which in a pool is not the parent's death, and it is Linux-only.
"""

from __future__ import annotations

import os
import threading
import time

EXIT_CODE = 70  # what an orphaned worker exits with


def _watch(parent: int, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent:
            os._exit(EXIT_CODE)


def die_with_parent(poll_s: float = 0.5) -> None:
    """Call first in a worker process: end it when the process that started it ends."""
    parent = os.getppid()
    if parent <= 1:  # already orphaned (the parent died during start-up)
        os._exit(EXIT_CODE)
    threading.Thread(
        target=_watch, args=(parent, poll_s), name="unlearnkit-lifeline", daemon=True
    ).start()
