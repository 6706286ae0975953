"""Per-sample memorization scores on disk: ``scores.csv`` + a JSON sidecar.

The CSV has one row per training sample (``sample_id, score, stderr``) so any tool can read it;
the sidecar records what produced the scores (method, K, fraction, seed) and the fingerprint of
the training set, so a score file is never applied to other data. ``direction`` says which way
memorization grows: +1 for Feldman-Zhang and curvature, -1 for confidence-like proxies (a
well-learned sample is a confident one), so ``memorization()`` always means "higher = more
memorized".
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlearnkit.atomic_files import atomic_write_text
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import ConflictError, UnlearnkitError

SIDECAR_SUFFIX = ".json"


@dataclass
class ScoreTable:
    """Scores aligned with ``sample_ids``; ``stderr`` is NaN where the method defines none."""

    sample_ids: torch.Tensor
    score: torch.Tensor
    stderr: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sample_ids = torch.as_tensor(self.sample_ids, dtype=torch.long)
        self.score = torch.as_tensor(self.score, dtype=torch.float64)
        self.stderr = torch.as_tensor(self.stderr, dtype=torch.float64)
        n = self.sample_ids.numel()
        if self.score.shape != (n,) or self.stderr.shape != (n,):
            raise ValueError("sample_ids, score and stderr must have the same length")

    def __len__(self) -> int:
        return int(self.sample_ids.numel())

    @property
    def direction(self) -> int:
        return int(self.meta.get("direction", 1))

    def memorization(self) -> torch.Tensor:
        """Scores oriented so that higher means more memorized (NaN -> 0: no evidence)."""
        return torch.nan_to_num(self.score * self.direction, nan=0.0)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Oriented scores of ``ids``; every id must be in the table."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        order = torch.argsort(self.sample_ids)
        sorted_ids = self.sample_ids[order]
        pos = torch.searchsorted(sorted_ids, ids).clamp_max(max(len(self) - 1, 0))
        found = sorted_ids[pos] == ids if len(self) else torch.zeros_like(ids, dtype=torch.bool)
        if not bool(found.all()):
            missing = int(ids[~found][0])
            raise UnlearnkitError(
                f"sample id {missing} has no memorization score in this file "
                "(was it computed for another data set?)"
            )
        return self.memorization()[order[pos]]

    def check_matches(self, train: ArraySplit, source: str = "score file") -> None:
        """Refuse scores made for other data (fingerprint or sample ids differ)."""
        want = train.fingerprint()
        have = self.meta.get("train_fingerprint")
        if have != want:
            raise ConflictError(
                f"{source} was computed for other data (fingerprint {have} != "
                f"{want} of this training set)"
            )
        if not torch.equal(torch.sort(self.sample_ids).values, torch.sort(train.ids).values):
            raise ConflictError(f"{source} does not list exactly this training set's samples")


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


def save_scores(table: ScoreTable, path: str | Path) -> Path:
    """Write ``path`` (CSV) and ``path.json`` (metadata), each atomically."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample_id", "score", "stderr"])
    for i, s, e in zip(
        table.sample_ids.tolist(), table.score.tolist(), table.stderr.tolist(), strict=True
    ):
        writer.writerow([i, _fmt(s), _fmt(e)])
    atomic_write_text(sidecar_path(path), json.dumps(table.meta, indent=2))
    atomic_write_text(path, buf.getvalue())
    return path


def load_scores(path: str | Path) -> ScoreTable:
    """Read a score file written by ``save_scores``; malformed files are a clear error."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
        meta = json.loads(sidecar_path(path).read_text())
    except OSError as exc:
        raise UnlearnkitError(
            f"cannot read score file {path} (and its {SIDECAR_SUFFIX} "
            f"sidecar): {exc.strerror or exc}"
        ) from None
    except json.JSONDecodeError:
        raise UnlearnkitError(f"{sidecar_path(path)} is not valid JSON") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != ["sample_id", "score", "stderr"]:
        raise UnlearnkitError(f"{path}: expected the header sample_id,score,stderr")
    try:
        ids = [int(r[0]) for r in rows[1:]]
        score = [float(r[1]) for r in rows[1:]]
        stderr = [float(r[2]) for r in rows[1:]]
    except (ValueError, IndexError):
        raise UnlearnkitError(f"{path}: every row needs an integer id and two numbers") from None
    return ScoreTable(
        torch.tensor(ids, dtype=torch.long), torch.tensor(score), torch.tensor(stderr), meta
    )
