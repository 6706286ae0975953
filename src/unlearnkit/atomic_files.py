"""Files written whole or not at all, with the permissions the user's umask asks for.

Every output (checkpoints, run directories, exports, score files) is written to a temporary
sibling and renamed into place. ``tempfile`` creates those siblings private (0600 files, 0700
folders) whatever the umask says; left as they were, every model and run directory would be
readable by its owner only, with no way to share it with a group. So a file is given the mode
an ordinary ``open()`` would have given it: the umask is the option (``umask 027`` for a
group-readable team folder, ``umask 077`` for owner-only). The deletion service passes its own
explicit modes (``serve --group-readable``).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = re.search(r"^Umask:\s*([0-7]+)", status, re.MULTILINE)
    if found:
        return int(found.group(1), 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (the only portable way)
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


def ordinary_file_mode() -> int:
    """The mode ``open(path, "w")`` would create a file with."""
    return 0o666 & ~process_umask()


def ordinary_dir_mode() -> int:
    """The mode ``os.mkdir(path)`` would create a folder with."""
    return 0o777 & ~process_umask()


def temporary_sibling(path: Path, suffix: str = "") -> Path:
    """An empty hidden file next to ``path`` with the mode an ordinary file would have."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, ordinary_file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``path`` whole or not at all (temporary sibling, fsync, rename). ``mode``: the file
    mode it is created with (else the umask's), and the folder must exist already."""
    path = Path(path)
    if mode is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, ordinary_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(Path(path), text.encode())
