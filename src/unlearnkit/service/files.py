"""Owner-only files for everything the service writes (the ledger names clients, keys and ids).

Files are 0600 and directories 0700; ``group=True`` (``serve --group-readable``) adds read
access (and directory search) for the group: 0640 / 0750. Modes are set explicitly after each
write rather than through the process umask, which is shared by every thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from unlearnkit.models.checkpoint import atomic_write_bytes


def file_mode(group: bool = False) -> int:
    return 0o640 if group else 0o600


def dir_mode(group: bool = False) -> int:
    return 0o750 if group else 0o700


def private_dir(path: Path, group: bool = False) -> Path:
    """Create ``path`` (and missing parents inside it) with the service's directory mode."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=dir_mode(group))
    os.chmod(path, dir_mode(group))
    return path


def restrict_tree(path: Path, group: bool = False) -> None:
    """Set the service's modes on ``path`` and everything under it."""
    path = Path(path)
    os.chmod(path, dir_mode(group) if path.is_dir() else file_mode(group))
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), dir_mode(group))
            for f in files:
                os.chmod(os.path.join(root, f), file_mode(group))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, group: bool = False) -> None:
    """Write ``path`` atomically and durably (temporary file, fsync, rename, fsync of the
    directory), created with the service's file mode from the start."""
    path = Path(path)
    atomic_write_bytes(path, data, mode=file_mode(group))
    fsync_dir(path.parent)
