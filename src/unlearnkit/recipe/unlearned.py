"""An unlearned model on disk: the same directory layout as a trained one, plus where it came from.

``unlearnkit unlearn`` writes one per seed, so a model unlearned by any method can be evaluated
again, exported and served like the model it came from. The metadata adds an ``unlearning``
record: the method and its parameters, the forget set (sample ids, never their data) and the
lineage (the parent model directory and a SHA-256 of each model file), so an auditor can tell
which model a deployed file was made from and what it was asked to forget.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.data import DatasetBundle
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import (
    atomic_save_tensors,
    atomic_write_text,
    save_state,
    versions,
)
from unlearnkit.recipe.build import sized_for
from unlearnkit.recipe.config import RecipeConfig
from unlearnkit.recipe.store import INITIAL_FILE, MODEL_FILE, preprocessing_of

UNLEARNING_KEY = "unlearning"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class UnlearnedModel:
    """What one method produced on one seed, detached from the run (weights copied to the CPU)."""

    method: str
    params: dict[str, Any]
    state: dict[str, torch.Tensor]
    initial_state: dict[str, torch.Tensor]
    trainable: list[str]
    seed: int
    forget_ids: list[int]
    forget_spec: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def capture_unlearned(
    method: str,
    params: dict[str, Any],
    original: nn.Module,
    unlearned: nn.Module,
    initial_state: dict[str, torch.Tensor],
    trainable: list[str],
    seed: int,
    forget_ids: torch.Tensor,
    forget_spec: str | None = None,
) -> UnlearnedModel | None:
    """A detached copy of ``unlearned``; None when it is not the original's architecture.

    Fast-NTK's default (``linearized``) result is a linearised model, f0(x) + J(x)(w - w0), not
    the network at new weights: it is deployed from the NTK state (`ntk precompute` + `serve
    --mode approximate`), so there is no plain weight file to write for it.
    """
    state = unlearned.state_dict()
    if type(unlearned) is not type(original) or set(state) != set(original.state_dict()):
        return None  # e.g. a LinearizedModel: its state names the network's, its forward differs
    return UnlearnedModel(
        method=method,
        params=dict(params),
        state={k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()},
        initial_state={k: v.detach().to("cpu").contiguous() for k, v in initial_state.items()},
        trainable=list(trainable),
        seed=seed,
        forget_ids=[int(i) for i in forget_ids.tolist()],
        forget_spec=forget_spec,
    )


def read_metadata(directory: Path) -> dict[str, Any]:
    path = Path(directory) / f"{MODEL_FILE}.json"
    try:
        return json.loads(path.read_text())
    except OSError:
        raise UnlearnkitError(f"{directory} holds no model metadata ({path.name})") from None
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"{path} is corrupt: {exc}") from None


def lineage_entry(directory: Path) -> dict[str, Any]:
    """One step of a lineage: a model directory, its model file's SHA-256 and its own lineage."""
    directory = Path(directory)
    meta = read_metadata(directory)
    return {
        "path": str(directory.resolve()),
        "model_sha256": file_sha256(directory / MODEL_FILE),
        "method": (meta.get(UNLEARNING_KEY) or {}).get("method", "train"),
    }


def save_unlearned(
    directory: Path,
    model: UnlearnedModel,
    cfg: RecipeConfig,
    bundle: DatasetBundle,
    parent: Path | None = None,
) -> Path:
    """Write ``directory`` in ``train``'s layout plus the ``unlearning`` record; returns it."""
    directory = Path(directory)
    cfg = sized_for(cfg, bundle)  # the recipe as it ran (epochs resolved for this data)
    save_state(directory / INITIAL_FILE, model.initial_state, {"role": "initial"})
    atomic_save_tensors(directory / MODEL_FILE, model.state)
    record = {
        "method": model.method,
        "params": model.params,
        "forget": model.forget_spec,
        "forget_ids": model.forget_ids,
        "n_forget": len(model.forget_ids),
        "parent": None if parent is None else lineage_entry(parent),
        "model_sha256": file_sha256(directory / MODEL_FILE),
        **model.extra,
    }
    meta = {
        "config": cfg.model_dump(mode="json", include=set(RecipeConfig.model_fields)),
        "seed": model.seed,
        "trainable": model.trainable,
        "data_fingerprint": bundle.fingerprint,
        "num_classes": bundle.num_classes,
        "in_chans": bundle.in_chans,
        "image_size": bundle.image_size,
        "preprocessing": preprocessing_of(bundle).to_json(),
        UNLEARNING_KEY: record,
        "versions": versions(),
    }
    atomic_write_text(directory / f"{MODEL_FILE}.json", json.dumps(meta, indent=2))
    return directory


def unlearning_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The ``unlearning`` record of a model directory's metadata (None for a trained model)."""
    record = meta.get(UNLEARNING_KEY)
    return record if isinstance(record, dict) else None


def refuse_unlearned_parent(meta: dict[str, Any], directory: Path) -> None:
    """Unlearning again from an unlearned model would treat what it forgot as retain data
    (its data set still holds those samples), so the retrain reference would be wrong."""
    record = unlearning_record(meta)
    if record is not None:
        parent = (record.get("parent") or {}).get("path", "its source model")
        raise UnlearnkitError(
            f"{directory} is already an unlearned model ({record['method']}, "
            f"{record['n_forget']} samples forgotten); unlearn from {parent} with both forget "
            "sets together (--forget indices:FILE)"
        )
