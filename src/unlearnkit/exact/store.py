"""Atomic on-disk state: content-named tensor files + a JSON record + a ``CURRENT`` pointer.

A save writes any tensor file it needs under a name derived from its content (so unchanged
weights are never rewritten), then the JSON record, then flips ``CURRENT`` with an atomic
rename, and only then removes files no longer referenced. An interrupted train or delete leaves
``CURRENT`` on the previous record, whose files all still exist.

An ensemble's state (:class:`SavedEnsemble`) is stored as three tensor files (backbone, the
blocks that are switched on, the ids of the live samples) and one record (config, stack spec,
ownership map, block table, receipts, counters, meta). No pixel is stored: the record's meta
names the data set (name, folder, options, fingerprint; ``data_ref``) and loading re-reads it,
refusing data whose fingerprint differs. Blocks that are switched off were trained on a deleted
sample: their tensors are not written (a retrain starts them afresh). An ensemble trained from
Python on arrays with no data set named has no reference: its live samples are stored inline
(``data``), as every save did before references; such saves, old ones included, still load.
Records written before the spec was named ``stack`` store it under ``spec``; they still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import NotFoundError, UnlearnkitError
from unlearnkit.exact.data_ref import has_reference, referenced_data
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.sequences import Order
from unlearnkit.exact.stack import StackSpec
from unlearnkit.models.checkpoint import atomic_write_text, save_state

POINTER = "CURRENT"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:20]


def save_record(
    directory: str | Path, record: dict[str, Any], files: dict[str, dict[str, torch.Tensor]]
) -> Path:
    """Write ``files`` (role -> tensors) and ``record`` (gets ``files``: role -> file name)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    for role, tensors in files.items():
        name = f"{role}-{tensor_digest(tensors)}.safetensors"
        if not (root / name).is_file():
            save_state(root / name, tensors, {"role": role})
        names[role] = name
    record = {**record, "files": names}
    version = int(record.get("version", 0))
    record_name = f"state-{version:08d}-{hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:8]}.json"  # noqa: E501
    atomic_write_text(root / record_name, json.dumps(record, indent=1))
    atomic_write_text(root / POINTER, record_name + "\n")
    keep = {record_name, POINTER, *names.values(), *(n + ".json" for n in names.values())}
    for path in root.iterdir():
        stale = (
            path.name.startswith("state-")
            or path.suffix == ".safetensors"
            or (path.name.endswith(".safetensors.json"))
        )
        if stale and path.name not in keep:
            path.unlink(missing_ok=True)
    return root / record_name


def _record_path(root: Path) -> Path:
    pointer = root / POINTER
    if not pointer.is_file():
        raise UnlearnkitError(f"{root} holds no saved ensemble (no {POINTER} file)")
    return root / pointer.read_text().strip()


def read_kind(directory: str | Path) -> str:
    """The scheme a saved ensemble uses (``s3t`` or ``sisa``), without loading tensors."""
    path = _record_path(Path(directory))
    try:
        return str(json.loads(path.read_text())["kind"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UnlearnkitError(f"ensemble record {path} is unreadable: {exc}") from None


def load_record(directory: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    root = Path(directory)
    record_path = _record_path(root)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnlearnkitError(f"ensemble record {record_path} is unreadable: {exc}") from None
    files = {}
    for role, name in record.get("files", {}).items():
        try:
            files[role] = load_file(str(root / name))
        except (SafetensorError, OSError) as exc:
            raise UnlearnkitError(
                f"ensemble file {root / name} is missing or corrupt: {exc}"
            ) from None
    return record, files


@dataclass
class SavedEnsemble:
    """Everything an ensemble needs to be rebuilt (its stack comes from spec, backbone, blocks)."""

    kind: str
    config: dict[str, Any]  # the scheme's config, as JSON
    spec: StackSpec
    partition: Partition
    sequences: list[Order]
    alive: np.ndarray
    backbone: dict[str, torch.Tensor]
    blocks: dict[str, torch.Tensor]  # switched-on blocks only: nothing trained on deleted data
    data: ArraySplit  # live samples only; written as ids when ``meta`` names the data set
    version: int = 0
    receipts: dict[int, dict[str, Any]] = field(default_factory=dict)
    retrains_done: int = 0
    retrain_seconds: float = 0.0
    train_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def save_ensemble(directory: str | Path, state: SavedEnsemble) -> Path:
    """Atomic: the previous state stays loadable until the new one is complete."""
    record = {
        "kind": state.kind,
        "version": state.version,
        "config": state.config,
        "stack": state.spec.to_dict(),
        "partition": state.partition.to_dict(),
        "sequences": [list(o) for o in state.sequences],
        "alive": state.alive.astype(int).tolist(),
        "receipts": {str(k): v for k, v in state.receipts.items()},
        "retrains_done": state.retrains_done,
        "retrain_seconds": state.retrain_seconds,
        "train_seconds": state.train_seconds,
        "meta": state.meta,
    }
    d = state.data
    files = {"backbone": state.backbone, "blocks": state.blocks}
    if has_reference(state.meta):  # ids only: the pixels are re-read from the data set
        files["ids"] = {"ids": d.ids.clone()}
    else:  # a bare-array ensemble (no data set to name): its inputs inline, as handed in
        files["data"] = {"x": d.x, "y": d.y, "ids": d.ids}
    return save_record(directory, record, files)


def _saved_data(directory: str | Path, record: dict[str, Any], files: dict) -> ArraySplit:
    """The live training samples: inline (no data set named, or an old save), or re-read
    from the data set the meta names, checked by fingerprint, keeping the saved ids."""
    if "data" in files:
        d = files["data"]
        return ArraySplit(d["x"], d["y"], d["ids"])
    meta = dict(record.get("meta", {}))
    if "ids" not in files or not has_reference(meta):
        raise UnlearnkitError(
            f"saved ensemble in {directory} holds neither its data nor a data set reference; "
            "train it again"
        )
    train = referenced_data(meta).train
    try:
        return train.select_ids(files["ids"]["ids"])
    except NotFoundError as exc:
        raise UnlearnkitError(
            f"saved ensemble in {directory}: its data set lacks a trained sample ({exc})"
        ) from None


def read_ensemble(directory: str | Path) -> SavedEnsemble:
    """What ``save_ensemble`` wrote (or an older version of it); malformed: a clear error."""
    record, files = load_record(directory)
    data = _saved_data(directory, record, files)
    try:
        return SavedEnsemble(
            kind=str(record["kind"]),
            config=record["config"],
            spec=StackSpec.from_dict(record["stack"] if "stack" in record else record["spec"]),
            partition=Partition.from_dict(record["partition"]),
            sequences=[tuple(int(i) for i in o) for o in record["sequences"]],
            alive=np.asarray(record["alive"], dtype=bool),
            backbone=files["backbone"],
            blocks=files["blocks"],
            data=data,
            version=int(record["version"]),
            receipts={int(k): v for k, v in record["receipts"].items()},
            retrains_done=int(record["retrains_done"]),
            retrain_seconds=float(record["retrain_seconds"]),
            train_seconds=float(record.get("train_seconds", 0.0)),
            meta=dict(record.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UnlearnkitError(f"saved ensemble in {directory} is malformed: {exc}") from None
