"""The two kinds of failure: a user's mistake and the toolkit's own.

``UnlearnkitError`` is raised for bad input (a name, value, file, request), so the CLI and the
service can answer with one clean line (exit code 2, HTTP 4xx). ``InternalError`` is raised when
the toolkit itself fails although the input was fine (training diverged, a ledger was lost): the
CLI reports it with exit code 1 and the service with HTTP 5xx, never as the user's fault.
"""

from __future__ import annotations

from pydantic import ValidationError


class UnlearnkitError(ValueError):
    """A mistake in what the user asked for (bad name, value, file): one line, no traceback."""


class NotFoundError(UnlearnkitError):
    """A named thing (sample id, file, run) does not exist."""


class ConflictError(UnlearnkitError):
    """The request contradicts current state (already deleted, stale state file)."""


class InternalError(RuntimeError):
    """The toolkit failed on valid input (diverged training, lost ledger): not a user mistake."""


def validation_message(exc: ValidationError) -> str:
    """One line naming the first invalid field of a pydantic model and why."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    return f"invalid {field}: {msg}"
