"""User-facing errors: raised for bad input so the CLI and the service can answer cleanly."""

from __future__ import annotations


class UnlearnkitError(ValueError):
    """A mistake in what the user asked for (bad name, value, file): one line, no traceback."""


class NotFoundError(UnlearnkitError):
    """A named thing (sample id, file, run) does not exist."""


class ConflictError(UnlearnkitError):
    """The request contradicts current state (already deleted, stale state file)."""
