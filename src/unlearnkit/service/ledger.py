"""The deletion ledger: a SQLite file (WAL, synchronous=FULL) that is the source of truth.

Every change to the served model is an event with a sequence number: a deletion request (written
before it is acknowledged) or a retrain commit. Events are applied to the model in sequence
order, and a model snapshot on disk records the last sequence number it reflects, so after a
crash exactly the events after that number are replayed: nothing acknowledged is lost and
nothing is applied twice.

Opening checks the file (a corrupt one, or one of another model, is the user's bad directory:
``UnlearnkitError``). Once open, a failure is the service's own (``InternalError``): a database
error, or the file removed or replaced under the running service. The last two, and corruption,
mark the ledger ``broken``: every later write is refused, as nothing more can be recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConflictError, InternalError, UnlearnkitError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('deletion', 'retrain')),
    request_id TEXT NOT NULL UNIQUE,
    client TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'applied', 'failed')),
    reason TEXT,
    receipt TEXT,
    accepted_at REAL NOT NULL,
    applied_at REAL,
    UNIQUE (client, idempotency_key)
);
"""
FORMAT = "unlearnkit-ledger/1"
# SQLite's messages for SQLITE_FULL, SQLITE_READONLY and SQLITE_IOERR (and the OS's ENOSPC)
_UNWRITABLE = re.compile(r"disk is full|readonly|read-only|disk I/O error|no space", re.I)


class LedgerWriteError(InternalError):
    """The ledger cannot be written now (disk full, read-only, I/O error): a passing failure;
    nothing was recorded, the same request can be retried once there is room again."""


@dataclass(frozen=True)
class Event:
    """One row of the ledger."""

    seq: int
    kind: str
    request_id: str
    client: str
    idempotency_key: str | None
    request_hash: str
    payload: dict[str, Any]
    status: str
    reason: str | None
    receipt: dict[str, Any] | None
    accepted_at: float
    applied_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        return cls(
            seq=row["seq"],
            kind=row["kind"],
            request_id=row["request_id"],
            client=row["client"],
            idempotency_key=row["idempotency_key"],
            request_hash=row["request_hash"],
            payload=json.loads(row["payload"]),
            status=row["status"],
            reason=row["reason"],
            receipt=json.loads(row["receipt"]) if row["receipt"] else None,
            accepted_at=row["accepted_at"],
            applied_at=row["applied_at"],
        )


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Ledger:
    """Thread-safe append-and-update log of model-changing events."""

    def __init__(self, path: str | Path, identity: dict[str, str]) -> None:
        """Open (or create) the ledger at ``path``; refuse a corrupt file or one that belongs to
        another model (``identity`` is stored at creation and compared on every open)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.row_factory = sqlite3.Row
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.DatabaseError(f"cannot switch to WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UnlearnkitError(
                f"ledger {self.path} is corrupt or unreadable ({exc}); refusing to start"
            ) from None
        self._check_identity({"format": FORMAT, **identity})
        self._inode = self.path.stat().st_ino
        self.broken: str | None = None  # why nothing more can be recorded, once that is so

    @contextmanager
    def _runtime(self, doing: str, write: bool = False) -> Iterator[None]:
        """Database errors of the open ledger are internal failures, not the user's."""
        if write:
            self._check_file()
        try:
            yield
        except sqlite3.Error as exc:
            if not isinstance(exc, sqlite3.OperationalError):  # corrupt (not busy or full)
                self.broken = f"ledger {self.path} is corrupt ({exc})"
            elif write and _UNWRITABLE.search(str(exc)):
                raise LedgerWriteError(
                    f"ledger {self.path}: cannot {doing}: the disk is full or the ledger is "
                    f"read-only ({exc}); nothing was recorded, retry later"
                ) from exc
            raise InternalError(f"ledger {self.path}: cannot {doing} ({exc})") from exc

    def _check_file(self) -> None:
        """Refuse to write to a ledger whose file was removed or replaced meanwhile."""
        if self.broken is None:
            try:
                inode = os.stat(self.path).st_ino
            except OSError:
                inode = None
            if inode != self._inode:
                self.broken = f"ledger {self.path} was removed or replaced while the service ran"
        if self.broken is not None:
            raise InternalError(f"{self.broken}; nothing more can be recorded: restart the service")

    def _check_identity(self, identity: dict[str, str]) -> None:
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            with self._tx() as db:
                db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(identity.items()))
            return
        for key, value in identity.items():
            if stored.get(key) != value:
                raise UnlearnkitError(
                    f"ledger {self.path} belongs to another model: its {key} is "
                    f"{stored.get(key)!r}, this model's is {value!r}; refusing to start"
                )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writes ------------------------------------------------------------------------------
    def append(
        self,
        kind: str,
        client: str,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
        on_commit: Callable[[Event], None] | None = None,
    ) -> tuple[Event, bool]:
        """Durably record an event; returns (event, created). A known (client, key) returns the
        stored event with created=False, or raises ConflictError if the payload differs.
        ``on_commit`` runs under the ledger lock right after the commit, so callbacks see
        events in sequence order."""
        digest = payload_hash(payload)
        with self._lock, self._runtime("record an event", write=True):
            if idempotency_key is not None:
                row = self._db.execute(
                    "SELECT * FROM events WHERE client = ? AND idempotency_key = ?",
                    (client, idempotency_key),
                ).fetchone()
                if row is not None:
                    if row["request_hash"] != digest:
                        raise ConflictError(
                            f"Idempotency-Key {idempotency_key!r} was already used for a "
                            "different request"
                        )
                    return Event.from_row(row), False
            request_id = uuid.uuid4().hex
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO events (kind, request_id, client, idempotency_key, request_hash,"
                    " payload, status, accepted_at) VALUES (?, ?, ?, ?, ?, ?, 'accepted', ?)",
                    (
                        kind,
                        request_id,
                        client,
                        idempotency_key,
                        digest,
                        json.dumps(payload),
                        time.time(),
                    ),
                )
                seq = cur.lastrowid
            event = self._get(seq)
            if on_commit is not None:
                on_commit(event)
            return event, True

    def finish(self, results: list[tuple[int, str, dict[str, Any] | None, str | None]]) -> None:
        """Mark events applied or failed in one transaction: (seq, status, receipt, reason)."""
        now = time.time()
        with self._lock, self._runtime("record results", write=True), self._tx() as db:
            db.executemany(
                "UPDATE events SET status = ?, receipt = ?, reason = ?, applied_at = ? "
                "WHERE seq = ?",
                [
                    (status, json.dumps(receipt) if receipt is not None else None, reason, now, seq)
                    for seq, status, receipt, reason in results
                ],
            )

    # -- reads -------------------------------------------------------------------------------
    def _get(self, seq: int) -> Event:
        return Event.from_row(
            self._db.execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone()
        )

    def find(self, client: str, idempotency_key: str) -> Event | None:
        with self._lock, self._runtime("look up an idempotency key"):
            row = self._db.execute(
                "SELECT * FROM events WHERE client = ? AND idempotency_key = ?",
                (client, idempotency_key),
            ).fetchone()
        return None if row is None else Event.from_row(row)

    def get(self, request_id: str) -> Event | None:
        with self._lock, self._runtime("read a request"):
            row = self._db.execute(
                "SELECT * FROM events WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else Event.from_row(row)

    def after(self, seq: int) -> list[Event]:
        """Events with a sequence number above ``seq``, in order (what a snapshot lacks)."""
        with self._lock, self._runtime("read events"):
            rows = self._db.execute(
                "SELECT * FROM events WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return [Event.from_row(r) for r in rows]

    def last_seq(self) -> int:
        with self._lock, self._runtime("read the last event"):
            row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def counts(self) -> dict[str, int]:
        with self._lock, self._runtime("count events"):
            rows = self._db.execute(
                "SELECT kind || '_' || status, COUNT(*) FROM events GROUP BY kind, status"
            ).fetchall()
        return {k: int(v) for k, v in rows}

    def claimed_ids(self) -> dict[int, str]:
        """Sample id -> request id of every deletion not failed (accepted or applied)."""
        with self._lock, self._runtime("read deleted ids"):
            rows = self._db.execute(
                "SELECT request_id, payload FROM events WHERE kind = 'deletion' "
                "AND status != 'failed' ORDER BY seq"
            ).fetchall()
        out: dict[int, str] = {}
        for row in rows:
            for i in json.loads(row["payload"])["sample_ids"]:
                out.setdefault(int(i), row["request_id"])
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
