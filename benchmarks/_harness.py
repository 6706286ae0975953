"""What benchmarks share: a bounded synthetic load, a record of the machine, the report write.

Benchmarks run as scripts (``python benchmarks/NAME.py``), so this module is imported as
``_harness`` from the script's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unlearnkit.models.checkpoint import atomic_write_text

BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


@contextmanager
def busy_load(procs: int, seconds: float) -> Iterator[None]:
    """``procs`` processes spinning on a core each, for at most ``seconds`` (they stop on their
    own even if this script is killed)."""
    workers = [
        subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=seconds)]) for _ in range(procs)
    ]
    time.sleep(1.0)  # let them reach the scheduler
    try:
        yield
    finally:
        for w in workers:
            w.kill()
            w.wait()


def machine() -> dict[str, object]:
    """CPUs, the cores this process may use and the load average, for a result's header."""
    return {
        "cpu_count": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "load_average": list(os.getloadavg()),
    }


def write_report(out: Path, stem: str, result: dict[str, Any], text: str) -> None:
    """``out/STEM.json`` (the figures) and ``out/STEM.md`` (their report), each written
    atomically, and the report printed."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(result, indent=1))
    atomic_write_text(out / f"{stem}.md", text)
    print(text)
