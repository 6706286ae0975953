"""Checkpoints: safetensors weights + a JSON sidecar (config, data fingerprint, versions).

Writes go to a temporary file that is renamed into place, so an interrupted save never leaves
a half-written checkpoint; a corrupt or mismatched file is a clear error.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearnkit import __version__
from unlearnkit.errors import UnlearnkitError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(Path(path), text.encode())


def atomic_savez(path: Path, **arrays: Any) -> None:
    """``numpy.savez`` to ``path`` atomically (a cache entry is whole or absent)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def versions() -> dict[str, str]:
    return {"unlearnkit": __version__, "torch": torch.__version__}


def atomic_save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """One safetensors file, written to a temporary sibling and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors) and ``path.json`` atomically."""
    path = Path(path)
    atomic_save_tensors(path, state)
    meta = {**metadata, "versions": versions()}
    atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=2))


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights (.safetensors, or a torch file with ``weights_only=True``) and metadata."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnkitError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as exc:
        raise UnlearnkitError(f"checkpoint {path} is corrupt or unreadable: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnlearnkitError(f"checkpoint {path} does not hold a dict of tensors")
    meta_path = path.with_suffix(path.suffix + ".json")
    metadata: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UnlearnkitError(f"checkpoint metadata {meta_path} is corrupt: {exc}") from None
    return state, metadata


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    save_state(path, model.state_dict(), metadata)


def load_checkpoint(path: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load weights into ``model``; shape or key mismatches are reported, model left untouched."""
    state, metadata = load_state(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise UnlearnkitError(f"checkpoint {path} does not fit this model ({what})")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise UnlearnkitError(
                f"checkpoint {path} does not fit this model: {key} has shape "
                f"{tuple(value.shape)}, model wants {tuple(own[key].shape)}"
            )
    model.load_state_dict(state)
    return metadata
