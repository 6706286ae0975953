"""Sample-id lists as users type them on the command line: ``3,17,42`` or ``@file``."""

from __future__ import annotations

from pathlib import Path

from unlearnkit.errors import UnlearnkitError


def parse_ids(text: str) -> list[int]:
    """``3,17,42`` or ``@file`` (one id per line, or comma-separated)."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text().replace("\n", ",")
        except OSError as exc:
            raise UnlearnkitError(f"--ids {text}: cannot read the file ({exc.strerror})") from None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UnlearnkitError(f"--ids {text!r}: expected comma-separated integers") from None
    if not ids:
        raise UnlearnkitError("--ids: no sample ids given")
    return ids
