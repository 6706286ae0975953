"""One writer per model directory, between processes: an OS file lock on
``DIR/service/writer.lock``.

``unlearnkit serve`` holds it from start to stop; ``unlearnkit s3t delete`` / ``retrain`` hold
it while they append to the ledger and write a snapshot. So the CLI and a running server never
both write the ledger, its mark or the snapshots. The lock is the kernel's (``flock``): it is
released when its holder exits, even by ``kill -9``, so a crash never leaves it stale. Within
one process the lock is shared (counted), so a test that starts services one after another in
the same process is never refused by itself.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.files import file_mode, private_dir

LOCK_FILE = "writer.lock"
_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, holders in this process)
_guard = threading.Lock()


class WriterLock:
    """Held from ``acquire`` to ``release`` (or ``with``)."""

    def __init__(self, root: Path, group: bool = False) -> None:
        self.path = Path(root) / LOCK_FILE
        self.group = group
        self.held = False

    def acquire(self, doing: str) -> WriterLock:
        """Take the lock at once or refuse in one line (``doing``: what the caller was about
        to do, for the message)."""
        key = os.path.realpath(self.path)
        with _guard:
            if key in _held:
                fd, count = _held[key]
                _held[key] = (fd, count + 1)
                self.held = True
                return self
            private_dir(self.path.parent, self.group)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode(self.group))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                model_dir = self.path.parent.parent
                raise UnlearnkitError(
                    f"cannot {doing}: another process is changing {model_dir} (a running "
                    "`unlearnkit serve`, or another `s3t delete` / `retrain`); send the "
                    "deletion to the service (POST /v1/deletions), or retry when it has stopped"
                ) from None
            _held[key] = (fd, 1)
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        key = os.path.realpath(self.path)
        with _guard:
            fd, count = _held[key]
            if count > 1:
                _held[key] = (fd, count - 1)
            else:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        self.held = False

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
