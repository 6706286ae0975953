"""Checkpoints: safetensors weights + a JSON sidecar (config, data fingerprint, versions).

Writes go to a temporary file that is renamed into place, so an interrupted save never leaves
a half-written checkpoint; a corrupt or mismatched file is a clear error.

Reading also takes the checkpoints other code writes (.pt / .pth, always ``weights_only``): the
usual containers (``state_dict``, ``model``, ``model_ema``) are unwrapped and DDP's ``module.``
and torch.compile's ``_orig_mod.`` prefixes stripped; a 3-channel first convolution is folded
into the model's channel count (timm's ``adapt_input_conv``); the head can be left out for a
new label set. A file that does not fit is one line naming the first keys that differ.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearnkit import __version__
from unlearnkit.atomic_files import (
    atomic_write_bytes,
    atomic_write_text,
    ordinary_file_mode,
    temporary_sibling,
)
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.channels import first_conv, fold_channels
from unlearnkit.models.heads import find_head


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
    tmp = temporary_sibling(path)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, ordinary_file_mode())  # safetensors re-creates the file privately
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


CONTAINER_KEYS = ("state_dict", "model", "model_ema", "state_dict_ema")
"""Where training scripts keep the weights (the first one present wins)."""

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""DDP's and torch.compile's key prefixes, stripped when every key carries one."""

SHOWN = 3
"""How many keys of each kind a mismatch message names."""


def _is_tensor_dict(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


def unwrap_state(value: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint's containers."""
    while isinstance(value, dict) and not _is_tensor_dict(value):
        inner = next((value[k] for k in CONTAINER_KEYS if isinstance(value.get(k), dict)), None)
        if inner is None:
            keys = ", ".join(map(str, list(value)[:6]))
            raise UnlearnkitError(
                f"checkpoint {path} holds no state dict (its keys: {keys}; looked for "
                f"{', '.join(CONTAINER_KEYS)})"
            )
        value = inner
    if not _is_tensor_dict(value):
        raise UnlearnkitError(f"checkpoint {path} does not hold a dict of tensors")
    state: dict[str, torch.Tensor] = {str(k): v for k, v in value.items()}
    return state


def _read_tensors(path: Path) -> Any:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:
            _, _, detail = str(exc).partition("WeightsUnpickler error:")
            reason = next((line for line in detail.splitlines() if line.strip()), str(exc))
            raise ValueError(f"not a torch weights file ({reason.strip()})") from None
        raise UnlearnkitError(
            f"checkpoint {path} holds pickled Python objects ({found.group(1)}: a "
            "torch.save(model) file?), not only weights; they are not loaded because unpickling "
            "runs code: save the weights with torch.save(model.state_dict(), PATH)"
        ) from None


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights (.safetensors, or a torch file with ``weights_only=True``) and metadata."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnkitError(f"checkpoint {path} does not exist")
    try:
        raw = _read_tensors(path)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as exc:
        if isinstance(exc, UnlearnkitError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnlearnkitError(f"checkpoint {path} is corrupt or unreadable: {first}") from None
    state = unwrap_state(raw, path)
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


def strip_wrappers(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Drop DDP / torch.compile prefixes that every key carries (unless the model's keys do)."""
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            ours = bool(own) and all(k.startswith(prefix) for k in own)
            if not ours and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state


def _fold_input_conv(
    model: nn.Module, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A checkpoint's RGB first conv folded to the model's channels (summed for 1 channel)."""
    found = first_conv(model)
    key = f"{found[0]}.weight" if found is not None else ""
    if key not in state or key not in own:
        return state
    theirs, ours = state[key], own[key]
    if theirs.dim() != 4 or theirs.shape == ours.shape:
        return state
    if theirs.shape[0] != ours.shape[0] or theirs.shape[2:] != ours.shape[2:]:
        return state
    return {**state, key: fold_channels(theirs, ours.shape[1])}


def _few(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def fit_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, skip_head: bool = False
) -> None:
    """Load ``state`` into ``model`` or raise one line naming what differs (model untouched).

    ``skip_head``: the checkpoint's head is ignored and the model keeps its own (a backbone for
    a new label set)."""
    own = model.state_dict()
    state = strip_wrappers(state, own)
    head_keys: set[str] = set()
    if skip_head:
        head = find_head(model)
        head_keys = {k for k in own if head.owns(k)}
        state = {k: v for k, v in state.items() if not head.owns(k)}
    state = _fold_input_conv(model, own, state)
    missing = [k for k in own if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {_shape(v)} vs {_shape(own[k])}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{what} {_few(keys)}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape (file vs model)", shapes),
            )
            if keys
        ]
        hint = ""
        if not skip_head and _only_head_differs(model, missing, unexpected, shapes):
            hint = " (another label set? --weights-skip-head loads the rest)"
        raise UnlearnkitError(
            f"checkpoint {source} does not fit this model: {'; '.join(parts)}{hint}"
        )
    model.load_state_dict(state, strict=not head_keys)


def _only_head_differs(
    model: nn.Module, missing: list[str], unexpected: list[str], shapes: list[str]
) -> bool:
    try:
        head = find_head(model)
    except UnlearnkitError:
        return False
    keys = missing + unexpected + [s.split(" ", 1)[0] for s in shapes]
    return bool(shapes) and not missing and not unexpected and all(head.owns(k) for k in keys)


def load_checkpoint(path: str | Path, model: nn.Module, skip_head: bool = False) -> dict[str, Any]:
    """Load weights into ``model``; shape or key mismatches are reported, model left untouched."""
    state, metadata = load_state(path)
    fit_state(model, state, str(path), skip_head=skip_head)
    return metadata
