"""Safetensors files of the NTK engine (states, shard caches), read whole with their metadata;
they are written by ``models.checkpoint.atomic_save_tensors``."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata); the safetensors / OS errors are the caller's to translate."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
    return load_file(str(path)), metadata
