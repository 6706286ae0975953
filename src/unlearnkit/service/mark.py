"""The ledger's high-water mark: the last acknowledged event and its hash-chain link, kept
outside the SQLite files so that losing the WAL, a one-file backup, a truncated or replaced
ledger cannot silently drop acknowledged deletions.

The ledger chains its events (``link[n] = sha256(link[n-1] + event n)``). Before a deletion is
acknowledged, ``advance`` writes (seq, link) into this file and fsyncs it: one ``pwrite`` and
one ``fdatasync`` of a 256-byte file, no rename. The file has two 128-byte slots, written in
turn (slot ``seq % 2``), each with its own CRC: a write torn by a crash damages only the slot
being written, and the other still holds the mark before it (the mark is a lower bound of what
the ledger must hold, so an older mark is safe, a lost one is not possible).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.files import write_private

MAGIC = b"unlearnkit-mark/1"
SLOT = 128
GENESIS = "0" * 64  # the link before the first event


def _slot(seq: int, link: str) -> bytes:
    body = f"{seq} {link}".encode()
    line = b"%s %s %08x\n" % (MAGIC, body, zlib.crc32(body))
    return line.ljust(SLOT - 1, b" ") + b"\n"


def _parse(raw: bytes) -> tuple[int, str] | None:
    parts = raw.split()
    if len(parts) != 4 or parts[0] != MAGIC:
        return None
    body = parts[1] + b" " + parts[2]
    try:
        if int(parts[3], 16) != zlib.crc32(body):
            return None
        seq, link = int(parts[1]), parts[2].decode("ascii")
    except ValueError:
        return None
    if seq < 0 or len(link) != 64:
        return None
    return seq, link


def read_mark(path: Path) -> tuple[int, str] | None:
    """(seq, link) of the newest intact slot; None if the file does not exist. A file with no
    intact slot is refused (``UnlearnkitError``)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnlearnkitError(f"ledger mark {path}: cannot read ({exc.strerror})") from None
    slots = [_parse(raw[i : i + SLOT]) for i in (0, SLOT)]
    good = [s for s in slots if s is not None]
    if not good:
        raise UnlearnkitError(f"ledger mark {path} is corrupt; refusing to start")
    return max(good)


class LedgerMark:
    """The open mark file of a running ledger."""

    def __init__(self, path: Path, seq: int, link: str, group: bool = False) -> None:
        """Open ``path`` at (seq, link): the ledger's verified end (both slots rewritten if the
        file is missing or behind, or, after an explicit reset, ahead)."""
        self.path = Path(path)
        if not self.path.exists() or read_mark(self.path) != (seq, link):
            write_private(self.path, _slot(seq, link) * 2, group)  # both slots, atomically
        self._fd = os.open(self.path, os.O_RDWR)
        self.seq, self.link = seq, link

    def advance(self, seq: int, link: str) -> None:
        """Durably record that the ledger holds events up to ``seq`` (fsynced on return)."""
        os.pwrite(self._fd, _slot(seq, link), (seq % 2) * SLOT)
        os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)
        self.seq, self.link = seq, link

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
