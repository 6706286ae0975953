"""The deletion ledger: a SQLite file (WAL, synchronous=FULL) that is the source of truth.

Every change to the served model is an event with a sequence number: a deletion request (written
before it is acknowledged) or a retrain commit. Events are applied to the model in sequence
order, and a model snapshot on disk records the last sequence number it reflects, so after a
crash exactly the events after that number are replayed: nothing acknowledged is lost and
nothing is applied twice.

The ledger proves its own completeness. Events form a hash chain (``link[n] = sha256(link[n-1]
+ canonical event n)``), and each append advances a high-water mark kept outside the SQLite
files (``mark.LedgerMark``: the last sequence number and its link, fsynced before the event is
acknowledged). Opening verifies, read-only and before anything is written, that the file is
intact, that every link matches its event, and that the ledger reaches the mark (and the served
snapshot) with the same link: a lost or damaged WAL, a one-file backup, a truncated, replaced or
missing ledger are refused instead of silently serving deleted samples again.

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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from unlearnkit.errors import ConflictError, InternalError, UnlearnkitError
from unlearnkit.service.files import file_mode, private_dir
from unlearnkit.service.mark import GENESIS, LedgerMark, read_mark

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
    link TEXT NOT NULL,
    UNIQUE (client, idempotency_key)
);
"""
FORMAT = "unlearnkit-ledger/2"
RESTORE_HINT = "restore the whole service directory from a backup (docs/service.md, Backups)"
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
    link: str = ""  # its hash-chain link

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
            link=row["link"],
        )


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def chain_link(previous: str, fields: list[Any]) -> str:
    """The link of an event: sha256 of the previous link and the event's immutable fields
    (seq, kind, request id, client, key, request hash, payload, accepted_at), canonical JSON."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((previous + text).encode()).hexdigest()


def _row_link(previous: str, row: sqlite3.Row) -> str:
    return chain_link(
        previous,
        [
            row["seq"],
            row["kind"],
            row["request_id"],
            row["client"],
            row["idempotency_key"],
            row["request_hash"],
            json.loads(row["payload"]),
            row["accepted_at"],
        ],
    )


def mark_path_for(path: Path) -> Path:
    """Where the mark of the ledger at ``path`` lives by default: ``ledger.mark`` beside it."""
    return path.with_name(path.stem + ".mark")


def _put_back(wal: Path, shm: Path, had_wal: bool, shm_bytes: bytes | None) -> None:
    """Undo what a read-only SQLite open leaves behind (an empty WAL, the WAL index)."""
    if not had_wal:
        wal.unlink(missing_ok=True)
    if shm_bytes is None:
        shm.unlink(missing_ok=True)
    elif shm.exists() and shm.read_bytes() != shm_bytes:
        shm.write_bytes(shm_bytes)


class Ledger:
    """Thread-safe append-and-update log of model-changing events."""

    def __init__(
        self,
        path: str | Path,
        identity: dict[str, str],
        *,
        mark_path: str | Path | None = None,
        served: tuple[int, str | None] | None = None,
        group: bool = False,
        reset_mark: bool = False,
    ) -> None:
        """Open (or create) the ledger at ``path`` and its mark (default: ``ledger.mark``
        beside it). Refused, with nothing written: a corrupt file, one of another model
        (``identity`` is stored at creation and compared on every open), a broken chain, a
        ledger that ends before its mark, or before ``served`` (the sequence number and link of
        the served snapshot; given when the service has run here, so the ledger must exist).
        ``reset_mark``: the operator's explicit override after restoring an older backup on
        purpose: the mark is not compared (the chain and the snapshot still are) and is
        rewritten at the ledger's end."""
        self.path = Path(path)
        self.mark_path = Path(mark_path) if mark_path is not None else mark_path_for(self.path)
        self.group = group
        self._reset_mark = reset_mark
        mark = None if reset_mark else read_mark(self.mark_path)
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        if self.path.exists():
            size = self.path.stat().st_size
            if size == 0 and not wal.exists() and mark is None and served is None:
                pass  # created, then a crash before its first page: still a new ledger
            elif size < 512:  # (SQLite would delete the WAL of an empty main file)
                raise UnlearnkitError(
                    f"ledger {self.path} is truncated ({size} bytes); {RESTORE_HINT}; "
                    "refusing to start"
                )
            before = (wal.exists(), shm.read_bytes() if shm.exists() else None)
            try:
                last, link = self._verify({"format": FORMAT, **identity}, mark, served)
            except UnlearnkitError:  # refused: leave the files exactly as they were
                _put_back(wal, shm, *before)
                raise
        elif mark is not None or served is not None:
            acked = f"up to event {mark[0]}" if mark is not None else "before"
            raise UnlearnkitError(
                f"ledger {self.path} is missing, but deletions were acknowledged here {acked}; "
                f"{RESTORE_HINT}; refusing to start"
            )
        else:
            last, link = 0, GENESIS
            private_dir(self.path.parent, group)
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode(group)))
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.row_factory = sqlite3.Row
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
        self._restrict()
        self._mark = LedgerMark(self.mark_path, last, link, group)
        self._inode = self.path.stat().st_ino
        self.broken: str | None = None  # why nothing more can be recorded, once that is so

    def _restrict(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", file_mode(self.group))

    def _verify(
        self,
        identity: dict[str, str],
        mark: tuple[int, str] | None,
        served: tuple[int, str | None] | None,
    ) -> tuple[int, str]:
        """Check the existing file read-only (the caller puts back the WAL index SQLite
        touches for it): intact, this model's, chain unbroken, reaching the mark
        and the served snapshot. Returns (last seq, its link)."""
        where = f"ledger {self.path}"
        try:
            db = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=30)
            db.row_factory = sqlite3.Row
            try:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(check)
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                if not {"meta", "events"} <= tables:  # no schema yet: an empty ledger
                    db.execute("CREATE TEMP TABLE meta (key TEXT, value TEXT)")
                    db.execute("CREATE TEMP TABLE events (seq INTEGER)")
                stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if stored and stored.get("format") != FORMAT:
                    raise UnlearnkitError(
                        f"{where} has format {stored.get('format')!r}; this version reads "
                        f"{FORMAT!r}; refusing to start"
                    )
                self._compare_identity(stored, identity)
                last, link, at = 0, GENESIS, {0: GENESIS}
                wanted = {s for s in (mark and mark[0], served and served[0]) if s}
                for row in db.execute("SELECT * FROM events ORDER BY seq"):
                    if row["seq"] != last + 1:
                        raise UnlearnkitError(
                            f"{where}: event {last + 1} is missing (next is {row['seq']}); "
                            f"{RESTORE_HINT}; refusing to start"
                        )
                    link = _row_link(link, row)
                    if row["link"] != link:
                        raise UnlearnkitError(
                            f"{where}: event {row['seq']} does not match its hash chain "
                            f"(altered); {RESTORE_HINT}; refusing to start"
                        )
                    last = row["seq"]
                    if last in wanted:
                        at[last] = link
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise UnlearnkitError(
                f"{where} is corrupt or unreadable ({exc}); refusing to start"
            ) from None
        if mark is None and (last > 0 or served is not None) and not self._reset_mark:
            raise UnlearnkitError(
                f"ledger mark {self.mark_path} is missing (the ledger cannot prove it is "
                f"complete); {RESTORE_HINT}; refusing to start"
            )
        for what, point in (
            ("acknowledged deletions (its mark)", mark),
            ("the served model snapshot", served),
        ):
            if point is None:
                continue
            seq, expected = point
            if seq > last:
                raise UnlearnkitError(
                    f"{where} ends at event {last} but {what} reach event {seq}: the ledger "
                    f"was truncated, its WAL lost or damaged, or an older copy restored; "
                    f"{RESTORE_HINT}; refusing to start"
                )
            if expected is not None and at.get(seq) != expected:
                raise UnlearnkitError(
                    f"{where}: event {seq} is not the one {what} recorded (ledger replaced); "
                    f"{RESTORE_HINT}; refusing to start"
                )
        return last, link

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
        self._compare_identity(stored, identity)

    def _compare_identity(self, stored: dict[str, str], identity: dict[str, str]) -> None:
        if not stored:
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
                top = db.execute(
                    "SELECT seq, link FROM events ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq, previous = (top["seq"] + 1, top["link"]) if top else (1, GENESIS)
                accepted_at = time.time()
                fields = [seq, kind, request_id, client, idempotency_key, digest, payload]
                link = chain_link(previous, [*fields, accepted_at])
                db.execute(
                    "INSERT INTO events (seq, kind, request_id, client, idempotency_key,"
                    " request_hash, payload, status, accepted_at, link)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'accepted', ?, ?)",
                    (*fields[:6], json.dumps(payload), accepted_at, link),
                )
            self._advance_mark(seq, link)
            event = self._get(seq)
            if on_commit is not None:
                on_commit(event)
            return event, True

    def _advance_mark(self, seq: int, link: str) -> None:
        """Make the mark durable before the event is acknowledged; if it cannot be written,
        the ledger can no longer prove what it acknowledged: nothing more is recorded."""
        try:
            self._mark.advance(seq, link)
        except OSError as exc:
            self.broken = f"ledger mark {self.mark_path} cannot be written ({exc.strerror})"
            raise InternalError(f"{self.broken}; restart the service") from None

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

    def page(
        self,
        *,
        client: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int = 0,
        limit: int = 50,
    ) -> list[Event]:
        """Deletion requests in sequence order after ``after_seq`` (a page cursor), at most
        ``limit``, filtered by client, status and accept time (``since`` <= t < ``until``)."""
        where, args = ["kind = 'deletion'", "seq > ?"], [after_seq]
        for clause, value in (
            ("client = ?", client),
            ("status = ?", status),
            ("ROUND(accepted_at, 6) >= ?", since),  # at the microseconds ISO 8601 shows
            ("ROUND(accepted_at, 6) < ?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        with self._lock, self._runtime("list requests"):
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [Event.from_row(r) for r in rows]

    def after(self, seq: int) -> list[Event]:
        """Events with a sequence number above ``seq``, in order (what a snapshot lacks)."""
        with self._lock, self._runtime("read events"):
            rows = self._db.execute(
                "SELECT * FROM events WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return [Event.from_row(r) for r in rows]

    def link_at(self, seq: int) -> str:
        """The chain link of event ``seq`` (the genesis link for 0)."""
        if seq == 0:
            return GENESIS
        with self._lock, self._runtime("read the chain"):
            row = self._db.execute("SELECT link FROM events WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise InternalError(f"ledger {self.path} has no event {seq}")
        return str(row["link"])

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
        """Checkpoint the WAL into the main file (after a clean stop the main file alone is
        complete), then close the file and the mark."""
        with self._lock:
            with suppress(sqlite3.Error):  # disk full or broken: the WAL keeps the events
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._mark.close()


def read_events(path: str | Path, identity: dict[str, str] | None = None) -> list[Event]:
    """Every event of the ledger at ``path``, read-only, its hash chain verified: what the CLI
    reads while a service may be writing the same file (SQLite's WAL lets a reader see the
    last committed state without blocking the writer). Nothing is written; WAL files this read
    had to create are removed again. A missing ledger has no events; one of another model
    (``identity`` differs from what it stored) is refused."""
    path = Path(path)
    if not path.exists():
        return []
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    had = (wal.exists(), shm.exists())
    events: list[Event] = []
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if "meta" in tables and identity is not None:
                stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
                for key, value in identity.items():
                    if stored and stored.get(key) != value:
                        raise UnlearnkitError(
                            f"ledger {path} belongs to another model: its {key} is "
                            f"{stored.get(key)!r}, this model's is {value!r}"
                        )
            if "events" in tables:
                link = GENESIS
                for row in db.execute("SELECT * FROM events ORDER BY seq"):
                    link = _row_link(link, row)
                    if row["link"] != link or row["seq"] != len(events) + 1:
                        raise UnlearnkitError(
                            f"ledger {path}: event {row['seq']} does not match its hash "
                            f"chain (altered or missing events); {RESTORE_HINT}"
                        )
                    events.append(Event.from_row(row))
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise UnlearnkitError(f"ledger {path} is corrupt or unreadable ({exc})") from None
    finally:
        if not had[0] and wal.exists() and wal.stat().st_size == 0:
            wal.unlink(missing_ok=True)
        if not had[1] and not had[0]:
            shm.unlink(missing_ok=True)
    return events
