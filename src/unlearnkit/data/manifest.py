"""An image folder's manifest: every file by sorted relative path, its label, size, mtime and
content hash, and which part of the data (D with its id, public, test, skipped) it became.

The manifest is what identifies the data: the fingerprint of an ImageFolder bundle is a hash
of the manifest rows (path, label, size, content), not of decoded pixels, and a model directory
keeps a copy (``manifest.csv``) so that a file added, removed or changed since training is
named in one line before anything is decoded. Copying the folder elsewhere (new mtimes, same
bytes) keeps the fingerprint: a changed mtime only triggers a content check of that file.
Reopening a model costs a stat per file: a file whose size and mtime are as recorded is not
read again (its hash comes from the manifest); ``verify_content`` re-reads every file.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.errors import ConflictError, UnlearnkitError

MANIFEST_FILE = "manifest.csv"
FIELDS = ("id", "part", "path", "label", "size", "mtime_ns", "sha256")


@dataclass(frozen=True)
class FileEntry:
    """One image file: ``path`` relative to the data root (posix), ``part`` = train (``id`` is
    its id in D), public, test or skipped (unreadable; ``id`` -1 when not in D)."""

    path: str
    label: int
    size: int
    mtime_ns: int
    sha256: str
    part: str = "train"
    id: int = -1


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def file_entry(root: Path, path: Path, label: int, data: bytes | None = None) -> FileEntry:
    """The entry of ``path`` (its bytes ``data`` if already read)."""
    stat = path.stat()
    data = path.read_bytes() if data is None else data
    return FileEntry(
        path=path.relative_to(root).as_posix(),
        label=label,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=content_hash(data),
    )


@dataclass(frozen=True)
class Manifest:
    entries: tuple[FileEntry, ...]  # sorted by path

    def digest(self) -> str:
        """What identifies the data: path, label, size and content of every file, and its part
        and id (mtimes are left out: a copy of the folder is the same data)."""
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.path}\0{e.label}\0{e.size}\0{e.sha256}\0{e.part}\0{e.id}\n".encode())
        return h.hexdigest()[:16]

    def ids_of(self, paths: Iterable[str]) -> list[int]:
        """The D ids of these relative paths; a path not in D is an error naming it."""
        by_path = {e.path: e for e in self.entries}
        out = []
        for raw in paths:
            path = Path(raw).as_posix().lstrip("./") if raw.startswith("./") else raw
            entry = by_path.get(path)
            if entry is None:
                raise UnlearnkitError(f"{raw}: no such file in the data set's manifest")
            if entry.part != "train":
                raise UnlearnkitError(f"{raw} is in the {entry.part} part, not in D (deletable)")
            out.append(entry.id)
        return out

    # -- on disk -----------------------------------------------------------------------------
    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(FIELDS)
        for e in self.entries:
            writer.writerow([e.id, e.part, e.path, e.label, e.size, e.mtime_ns, e.sha256])
        return buf.getvalue()

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            rows = list(csv.DictReader(path.read_text().splitlines()))
            entries = tuple(
                FileEntry(
                    path=r["path"],
                    label=int(r["label"]),
                    size=int(r["size"]),
                    mtime_ns=int(r["mtime_ns"]),
                    sha256=r["sha256"],
                    part=r["part"],
                    id=int(r["id"]),
                )
                for r in rows
            )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UnlearnkitError(f"manifest {path} is unreadable: {exc}") from None
        return cls(entries)

    def by_path(self) -> dict[str, FileEntry]:
        return {e.path: e for e in self.entries}

    def check_folder(
        self, root: Path, current: Iterable[tuple[Path, int]], verify_content: bool = False
    ) -> None:
        """The first file added, removed or changed since the manifest was made, in one line.

        ``current``: (file, label) of the folder now. The routine check is one stat per file:
        a changed label or size is an error; a file whose mtime moved (touched, or copied
        without its times) is read and hashed, and an error if its content changed, so an
        unchanged folder costs a stat per file and reads nothing. ``verify_content``: the deep
        check, every file read and hashed (finds an edit that kept both size and mtime)."""
        recorded = self.by_path()
        seen = set()
        for path, label in current:
            rel = path.relative_to(root).as_posix()
            seen.add(rel)
            entry = recorded.get(rel)
            if entry is None:
                raise ConflictError(f"{path} was added since training; the data set differs")
            stat = path.stat()
            changed = entry.label != label or entry.size != stat.st_size
            if not changed and (verify_content or entry.mtime_ns != stat.st_mtime_ns):
                changed = content_hash(path.read_bytes()) != entry.sha256
            if changed:
                raise ConflictError(f"{path} changed since training; the data set differs")
        for rel in sorted(set(recorded) - seen):
            raise ConflictError(f"{root / rel} was removed since training; the data set differs")


def unchanged_entry(
    known: dict[str, FileEntry] | None, root: Path, path: Path, label: int
) -> FileEntry | None:
    """The recorded entry of ``path`` when its label, size and mtime are as recorded (then its
    content hash is taken from the record and the file is not read), else None."""
    if not known:
        return None
    entry = known.get(path.relative_to(root).as_posix())
    if entry is None or entry.label != label:
        return None
    stat = path.stat()
    if (entry.size, entry.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return None
    return entry
