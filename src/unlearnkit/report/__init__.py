"""Reports: results.json -> report.md + PNG figures, written atomically into a run directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unlearnkit.atomic_files import ordinary_dir_mode
from unlearnkit.errors import UnlearnkitError
from unlearnkit.report.figures import accuracy_figure, mia_figure
from unlearnkit.report.markdown import (
    relearn_cell,
    render_report,
    result_warnings,
    stages_table,
    summary_table,
)

FIGURES = {"accuracy.png": accuracy_figure, "mia.png": mia_figure}

__all__ = [
    "load_results",
    "relearn_cell",
    "result_warnings",
    "staged_run_dir",
    "stages_table",
    "summary_table",
    "write_report",
    "write_run",
]


def write_report(results: dict[str, Any], directory: Path) -> list[Path]:
    """Write report.md and the figures into ``directory`` (which must exist)."""
    written = []
    for name, draw in FIGURES.items():
        draw(results, directory / name)
        written.append(directory / name)
    (directory / "report.md").write_text(render_report(results, list(FIGURES)))
    return [*written, directory / "report.md"]


@contextmanager
def staged_run_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to build a run directory in; on success swap it into
    place, on any failure remove it, so an interrupted run never leaves a half-written or mixed
    directory behind (and an existing ``out`` survives a failed run)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    os.chmod(staging, ordinary_dir_mode())  # mkdtemp's folders are private; honour the umask
    try:
        yield staging
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_run(
    results: dict[str, Any], out: Path, extras: Sequence[Callable[[Path], object]] = ()
) -> Path:
    """results.json, report.md and the figures, written atomically into ``out``.

    ``extras`` write more into the staging directory (the unlearned model directories), so they
    appear together with the results or not at all."""
    with staged_run_dir(out) as staging:
        (staging / "results.json").write_text(json.dumps(results, indent=2))
        write_report(results, staging)
        for write in extras:
            write(staging)
    return Path(out)


def load_results(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "results.json"
    try:
        results = json.loads(path.read_text())
    except OSError:
        raise UnlearnkitError(f"no results.json in {directory}") from None
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(results, dict) or "summary" not in results or "runs" not in results:
        raise UnlearnkitError(f"{path} is not an unlearnkit results file")
    return results
