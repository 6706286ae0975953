"""Model snapshots the service writes next to the model, each tagged with the ledger sequence
number it reflects.

``DIR/service/snapshots/snap-<seq>/`` holds what the adapter saves; ``DIR/service/SERVED.json``
names the current one with its ledger sequence number, that event's hash-chain link and the
SHA-256 of every file, and is replaced atomically, so a crash leaves the previous snapshot
current. The ledger refuses to open if it does not reach that event with that link. Unchanged
files are hard-linked from the previous snapshot rather than copied. A file whose checksum no
longer matches makes the service refuse to start. Files are 0600 and directories 0700 (0640 /
0750 with ``group``).

Erasure: once a snapshot that reflects deletions is current, the base model in ``DIR`` is
rewritten to the same state (content-named files hard-linked from the snapshot), and
``DIR/service/BASE.json`` records the ledger event it reflects; older snapshots are removed. So
no file of the directory still holds what the deleted samples were trained into: the switched-
off blocks of an ensemble, the pre-deletion NTK state. A base that was rewritten is loaded (when
``SERVED.json`` is gone) as the state after that event, never replayed from event 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.files import private_dir, restrict_tree, write_private
from unlearnkit.service.served import ServedModel, SnapshotCopy, load_served

FORMAT = "unlearnkit-served/1"
POINTER = "SERVED.json"
BASE = "BASE.json"  # the ledger event the rewritten base model reflects (after deletions)
_CONTENT_NAMED = re.compile(r"-[0-9a-f]{8,}\.safetensors$")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Snapshot:
    name: str | None  # None: the base model the service started from
    ledger_seq: int
    version: int


class SnapshotStore:
    def __init__(
        self,
        model_dir: Path,
        mode: str,
        options: dict[str, Any] | None = None,
        group: bool = False,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.root = self.model_dir / "service"
        self.dir = self.root / "snapshots"
        self.mode = mode
        self.options = dict(options or {})
        self.group = group  # group-readable files (serve --group-readable)

    def served_point(self) -> tuple[int, str | None] | None:
        """(ledger seq, link) the served snapshot reflects; None if the service never ran here
        (no SERVED.json), so a missing ledger is only acceptable then."""
        data = self._pointer() or self._base()
        if data is None:
            return None
        return int(data["ledger_seq"]), data.get("ledger_link")

    def _base(self) -> dict[str, Any] | None:
        """What ``BASE.json`` says about a base rewritten after deletions (None: pristine)."""
        path = self.root / BASE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            int(data["ledger_seq"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnlearnkitError(f"{path} is corrupt ({exc}); refusing to start") from None
        return data

    def _pointer(self) -> dict[str, Any] | None:
        path = self.root / POINTER
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}")
            int(data["ledger_seq"]), str(data["snapshot"]), dict(data["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnlearnkitError(f"{path} is corrupt ({exc}); refusing to start") from None
        if data.get("mode") != self.mode:
            raise UnlearnkitError(
                f"{path} was written in {data.get('mode')!r} mode, not "
                f"{self.mode!r}; refusing to start"
            )
        return data

    def load(self) -> tuple[ServedModel, Snapshot]:
        """The current snapshot (checksums verified), or the base model if there is none yet."""
        data = self._pointer()
        if data is None:
            model = load_served(self.mode, self.model_dir, **self.options)
            model.verify()
            base = self._base()
            return model, Snapshot(None, int(base["ledger_seq"]) if base else 0, model.version)
        where = self.dir / data["snapshot"]
        for rel, digest in data["files"].items():
            path = where / rel
            if not path.is_file():
                raise UnlearnkitError(f"model snapshot file {path} is missing; refusing to start")
            if file_digest(path) != digest:
                raise UnlearnkitError(
                    f"model snapshot file {path} does not match its checksum "
                    "(corrupted); refusing to start"
                )
        model = load_served(self.mode, self.model_dir, where, **self.options)
        return model, Snapshot(data["snapshot"], int(data["ledger_seq"]), model.version)

    def write(
        self, model: SnapshotCopy, ledger_seq: int, ledger_link: str | None = None
    ) -> Snapshot:
        """Save ``model`` as the state after ledger event ``ledger_seq`` (whose chain link is
        ``ledger_link``) and make it current."""
        previous = self._pointer()
        name = f"snap-{ledger_seq:010d}-v{model.version}"
        target = self.dir / name
        tmp = self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        private_dir(self.root, self.group)
        private_dir(self.dir, self.group)
        private_dir(tmp, self.group)
        if previous is not None:  # hard-link unchanged content-named files
            for rel in previous["files"]:
                src = self.dir / previous["snapshot"] / rel
                if src.suffix == ".safetensors" and src.is_file() and "/" not in rel:
                    os.link(src, tmp / rel)
        model.save(tmp)
        restrict_tree(tmp, self.group)
        files = {p.name: file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        for p in tmp.iterdir():  # make the content durable before the pointer names it
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        write_private(
            self.root / POINTER,
            json.dumps(
                {
                    "format": FORMAT,
                    "mode": self.mode,
                    "snapshot": name,
                    "ledger_seq": ledger_seq,
                    "ledger_link": ledger_link,
                    "version": model.version,
                    "files": files,
                },
                indent=1,
            ).encode(),
            self.group,
        )
        for old in self.dir.iterdir():
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        if model.deleted_ids():
            self._erase_base(model, target, ledger_seq, ledger_link)
        return Snapshot(name, ledger_seq, model.version)

    def _erase_base(
        self, model: SnapshotCopy, snapshot: Path, ledger_seq: int, ledger_link: str | None
    ) -> None:
        """Rewrite the base model in ``DIR`` as the snapshot's state (see the module doc)."""
        for src in snapshot.iterdir():
            dst = self.model_dir / src.name
            if _CONTENT_NAMED.search(src.name) and not dst.exists():
                os.link(src, dst)  # unchanged content: the save below skips it
        model.save(self.model_dir)
        write_private(
            self.root / BASE,
            json.dumps(
                {
                    "format": FORMAT,
                    "mode": self.mode,
                    "ledger_seq": ledger_seq,
                    "ledger_link": ledger_link,
                    "version": model.version,
                },
                indent=1,
            ).encode(),
            self.group,
        )
