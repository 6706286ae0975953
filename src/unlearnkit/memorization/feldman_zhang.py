"""The Feldman-Zhang memorization estimator: many models on random subsets, in vs out accuracy.

mem(i) = P[correct on i | i in training] - P[correct on i | i held out], estimated from K models
each trained on a random ``fraction`` of D with the same recipe as the original model. Each
finished model's per-sample correctness is cached on disk (atomically), so an interrupted run
resumes where it stopped; models run in chunks through an executor (in-process or Ray), and the
scores do not depend on which executor ran them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.scores import ScoreTable
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import Architecture, reset_head
from unlearnkit.models.checkpoint import atomic_savez
from unlearnkit.runtime import create_executor, using_threads
from unlearnkit.training import TrainConfig, predict_logits, train

ModelProgress = Callable[[int, int], None]  # (models done, models in total)


class FZConfig(BaseModel):
    """How many subset models, how big each subset, and the seed that fixes every subset."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(100, ge=2, le=100_000, description="number of subset models (K)")
    fraction: float = Field(0.7, gt=0, lt=1, description="share of D each model trains on")
    seed: int = 0
    chunk_size: int = Field(5, ge=1, description="models per executor task")


def fz_config(**values: Any) -> FZConfig:
    """Validated settings; a bad value is a one-line ``UnlearnkitError`` naming the field."""
    try:
        return FZConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UnlearnkitError(
            f"feldman-zhang: invalid {err['loc'][0]!s} "
            f"({values.get(err['loc'][0])!r}): {err['msg']}"
        ) from None


@dataclass
class SubsetModelSpec:
    """How every subset model starts: the architecture, the shared start, what trains."""

    architecture: Architecture
    initial_state: dict[str, torch.Tensor] | None  # shared pretrained start; None = random init
    trainable: list[str]
    reset_head: bool


@dataclass
class SubsetJob:
    index: int
    seed: int
    member: torch.Tensor  # bool (N,): which samples of D this model trains on


@dataclass
class JobChunk:
    """One executor task: several subset models (per-task overhead matters for tiny models)."""

    data: ArraySplit
    spec: SubsetModelSpec
    recipe: TrainConfig
    jobs: list[SubsetJob]


def subset_mask(n: int, fraction: float, seed: int, index: int) -> torch.Tensor:
    """Model ``index``'s random subset: a function of (seed, index) only, so K can grow later."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    member = torch.zeros(n, dtype=torch.bool)
    member[torch.randperm(n, generator=gen)[: max(1, round(fraction * n))]] = True
    return member


def train_chunk(chunk: JobChunk) -> list[dict[str, Any]]:
    """Train each model of the chunk on its subset; return per-sample correctness on all of D.

    Top-level and single-threaded, so any executor gives bit-identical results.
    """
    out = []
    with using_threads(1):
        for job in chunk.jobs:
            start = time.perf_counter()
            spec = chunk.spec
            torch.manual_seed(job.seed)
            model = spec.architecture.build()
            if spec.initial_state is not None:
                model.load_state_dict(spec.initial_state)
            if spec.reset_head:
                reset_head(model, job.seed)
            train(
                model,
                chunk.data.subset(job.member),
                chunk.recipe.model_copy(update={"seed": job.seed, "progress": False}),
                spec.trainable,
            )
            correct = predict_logits(model, chunk.data).argmax(1) == chunk.data.y
            out.append(
                {
                    "index": job.index,
                    "correct": correct.numpy(),
                    "member": job.member.numpy(),
                    "seconds": time.perf_counter() - start,
                }
            )
    return out


def settings_key(
    data: ArraySplit, spec: SubsetModelSpec, recipe: TrainConfig, cfg: FZConfig
) -> str:
    """What makes a cached model reusable (K and chunking are not part of it)."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "data": data.fingerprint(),
                "model": spec.architecture.name,
                "options": spec.architecture.options,
                "trainable": spec.trainable,
                "reset_head": spec.reset_head,
                "recipe": recipe.model_dump(exclude={"progress", "seed"}),
                "seed": recipe.seed,
                "fraction": cfg.fraction,
                "fz_seed": cfg.seed,
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    if spec.initial_state is not None:
        for name in sorted(spec.initial_state):
            h.update(name.encode())
            h.update(spec.initial_state[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class ModelCache:
    """``DIR/model_00042.npz`` per finished model, written by rename so none is half-written."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, index: int) -> Path:
        return self.directory / f"model_{index:05d}.npz"

    def done(self, k: int) -> list[int]:
        return [i for i in range(k) if self.path(i).is_file()]

    def save(self, result: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_savez(
            self.path(result["index"]),
            correct=result["correct"],
            member=result["member"],
            seconds=np.float64(result["seconds"]),
        )

    def load(self, index: int) -> dict[str, Any]:
        with np.load(self.path(index)) as f:
            return {
                "index": index,
                "correct": f["correct"],
                "member": f["member"],
                "seconds": float(f["seconds"]),
            }


def memorization_from(correct: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mem = acc_in - acc_out per sample (K x N inputs) and its standard error.

    NaN where a sample was never in (or never out of) a subset; the error is NaN unless both
    sides have at least two models.
    """
    correct, member = correct.astype(np.float64), member.astype(bool)
    n_in, n_out = member.sum(0), (~member).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_in = (correct * member).sum(0) / n_in
        acc_out = (correct * ~member).sum(0) / n_out
        var_in = ((correct - acc_in) ** 2 * member).sum(0) / (n_in - 1)
        var_out = ((correct - acc_out) ** 2 * ~member).sum(0) / (n_out - 1)
        stderr = np.sqrt(var_in / n_in + var_out / n_out)
    stderr[(n_in < 2) | (n_out < 2)] = math.nan
    return acc_in - acc_out, stderr


@dataclass
class FZResult:
    scores: ScoreTable
    model_seconds: float  # training compute summed over the K models (the estimator's cost)
    wall_seconds: float  # wall time of this call (only the models it had to train)
    trained: int  # models trained by this call (the rest came from the cache)


def estimate_memorization(
    data: ArraySplit,
    spec: SubsetModelSpec,
    recipe: TrainConfig,
    cfg: FZConfig,
    cache_dir: str | Path,
    executor: Any = None,
    progress: ModelProgress | None = None,
    chunks_per_wave: int = 4,
    max_models: int | None = None,
) -> FZResult:
    """Feldman-Zhang scores for every sample of ``data``, resuming from ``cache_dir``.

    ``executor`` has ``map(fn, items)`` (unlearnkit.runtime); default: in-process.
    ``max_models`` stops after that many new models (used to test resuming).
    """
    if executor is None:
        executor = create_executor("local")
    key = settings_key(data, spec, recipe, cfg)
    cache = ModelCache(Path(cache_dir) / key)
    todo = [i for i in range(cfg.k) if not cache.path(i).is_file()]
    if max_models is not None:
        todo = todo[:max_models]
    done = cfg.k - len([i for i in range(cfg.k) if not cache.path(i).is_file()])
    if progress:
        progress(done, cfg.k)
    start = time.perf_counter()
    jobs = [
        SubsetJob(i, cfg.seed * 1_000_003 + i, subset_mask(len(data), cfg.fraction, cfg.seed, i))
        for i in todo
    ]
    chunks = [
        JobChunk(data, spec, recipe, jobs[s : s + cfg.chunk_size])
        for s in range(0, len(jobs), cfg.chunk_size)
    ]
    for s in range(0, len(chunks), chunks_per_wave):
        for results in executor.map(train_chunk, chunks[s : s + chunks_per_wave]):
            for result in results:
                cache.save(result)
                done += 1
        if progress:
            progress(done, cfg.k)
    wall = time.perf_counter() - start
    missing = [i for i in range(cfg.k) if not cache.path(i).is_file()]
    if missing:  # stopped early on purpose (max_models): no scores yet
        return FZResult(
            ScoreTable(
                data.ids,
                torch.full((len(data),), math.nan),
                torch.full((len(data),), math.nan),
                {"complete": False},
            ),
            math.nan,
            wall,
            len(todo),
        )
    loaded = [cache.load(i) for i in range(cfg.k)]
    mem, stderr = memorization_from(
        np.stack([r["correct"] for r in loaded]), np.stack([r["member"] for r in loaded])
    )
    model_seconds = float(sum(r["seconds"] for r in loaded))
    meta = {
        "method": "feldman_zhang",
        "direction": 1,
        "k": cfg.k,
        "fraction": cfg.fraction,
        "seed": cfg.seed,
        "train_fingerprint": data.fingerprint(),
        "settings_key": key,
        "model": spec.architecture.name,
        "recipe": recipe.model_dump(mode="json"),
        "model_seconds": model_seconds,
        "complete": True,
    }
    return FZResult(
        ScoreTable(data.ids, torch.from_numpy(mem), torch.from_numpy(stderr), meta),
        model_seconds,
        wall,
        len(todo),
    )


def model_spec(
    model_name: str,
    num_classes: int,
    in_chans: int,
    image_size: int,
    trainable: Sequence[str],
    initial_state: dict[str, torch.Tensor] | None,
    options: dict[str, Any] | None = None,
    reset_head: bool = False,
) -> SubsetModelSpec:
    return SubsetModelSpec(
        Architecture(model_name, num_classes, in_chans, image_size, dict(options or {})),
        initial_state,
        list(trainable),
        reset_head,
    )
