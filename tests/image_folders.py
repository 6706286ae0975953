"""A tiny ImageFolder written by a test (imported as a module: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: Path, per_class: int = 12, size: int = 12, classes: int = 2) -> Path:
    """``classes`` class folders of ``per_class`` JPEGs, each class a bright square in its own
    channel on dark noise (learnable, and every file different)."""
    rng = np.random.default_rng(7)
    for k in range(classes):
        folder = root / f"c{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 70, (size, size + 4, 3), dtype=np.uint8)
            img[3:-3, 3:-3, k % 3] = 210
            Image.fromarray(img).save(folder / f"{i:03d}.jpg", quality=92)
    return root
