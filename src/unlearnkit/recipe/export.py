"""Export a saved (trained or unlearned) model for a user's own serving stack.

Three formats, chosen by name or by the file's suffix: ``safetensors`` (a plain state dict; the
user rebuilds the architecture), ``torchscript`` (``torch.jit.trace``, loads with
``torch.jit.load`` and no unlearnkit) and ``exported`` (``torch.export``'s ``.pt2`` program,
loads with ``torch.export.load``). Every export gets a JSON sidecar (``FILE.json``) with the
architecture, the input shape, the preprocessing the model expects when the directory records it,
the unlearning record and lineage, and the SHA-256 of the exported file. A traced or exported
program is checked against the model on a random input before it is kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.atomic_files import temporary_sibling
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import atomic_save_tensors, atomic_write_text
from unlearnkit.recipe.store import MODEL_FILE, load_trained
from unlearnkit.recipe.unlearned import file_sha256, unlearning_record
from unlearnkit.registry import Registry

EXPORT_FORMATS: Registry[None] = Registry("export format")  # writer(model, example, path)
SUFFIXES = {
    ".safetensors": "safetensors",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".pt2": "exported",
}


def _check_program(
    program: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, example: torch.Tensor
) -> None:
    """A traced program silently freezes data-dependent branches: compare on a fresh input."""
    x = torch.randn_like(example)
    with torch.no_grad():
        want, got = model(x), program(x)
    if not torch.allclose(want, got, atol=1e-4, rtol=1e-4):
        raise UnlearnkitError(
            "the exported program does not reproduce the model's outputs "
            f"(max difference {float((want - got).abs().max()):.2e}); use --format safetensors"
        )


def _temp_sibling(path: Path) -> Path:
    """A hidden temporary file next to ``path`` with the same suffix (torch.export checks it)."""
    return temporary_sibling(path, suffix=path.suffix)


@EXPORT_FORMATS.register("safetensors")
def _safetensors(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    atomic_save_tensors(path, model.state_dict())


@EXPORT_FORMATS.register("torchscript")
def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    _check_program(traced, model, example)
    tmp = _temp_sibling(path)
    try:
        torch.jit.save(traced, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@EXPORT_FORMATS.register("exported")
def _exported(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    _check_program(program.module(), model, example)
    tmp = _temp_sibling(path)
    try:
        torch.export.save(program, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def format_for(path: Path, fmt: str | None) -> str:
    """The format asked for, else the one the suffix names (one-line error when neither)."""
    if fmt is not None:
        EXPORT_FORMATS.get(fmt)
        return fmt
    try:
        return SUFFIXES[path.suffix]
    except KeyError:
        raise UnlearnkitError(
            f"cannot tell the export format from {path.name!r}: give --format "
            f"({', '.join(EXPORT_FORMATS.names())}) or a suffix ({', '.join(sorted(SUFFIXES))})"
        ) from None


def export_model(directory: Path, out: Path, fmt: str | None = None) -> dict[str, Any]:
    """Write ``out`` (and ``out.json``) from the model directory; returns the sidecar."""
    out = Path(out)
    fmt = format_for(out, fmt)
    trained, cfg, meta = load_trained(Path(directory))
    model = trained.model.eval()
    shape = (meta["in_chans"], meta["image_size"], meta["image_size"])
    example = torch.zeros(2, *shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    EXPORT_FORMATS.get(fmt)(model, example, out)
    record = unlearning_record(meta)
    sidecar = {
        "format": fmt,
        "file_sha256": file_sha256(out),
        "source": {
            "path": str(Path(directory).resolve()),
            "model_sha256": file_sha256(Path(directory) / MODEL_FILE),
        },
        "model": cfg.model,
        "model_options": cfg.model_options,
        "num_classes": meta["num_classes"],
        "input_shape": ["N", *shape],
        "preprocessing": meta.get("preprocessing"),
        "unlearning": None
        if record is None
        else {k: record[k] for k in ("method", "params", "n_forget", "parent", "model_sha256")},
    }
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(sidecar, indent=2))
    return sidecar
