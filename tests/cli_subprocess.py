"""The CLI as a user runs it: ``python -m unlearnkit`` in a subprocess, with this checkout's
sources first on the path (imported by tests in any folder: pytest puts tests/ on sys.path for
its conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unlearnkit", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=600,
    )
