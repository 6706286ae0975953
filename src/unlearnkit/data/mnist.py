"""MNIST-format data sets (Fashion-MNIST, MNIST) from the four IDX files, gzipped or raw.

The IDX format is a big-endian header (a magic number that encodes the element type and the
number of dimensions, then one uint32 per dimension) followed by the raw uint8 values. Nothing
is downloaded: ``fashion_mnist`` reads ``data_dir`` or, without one, the files that the Debian
package ``dataset-fashion-mnist`` installs; ``mnist`` needs ``data_dir``.
"""

from __future__ import annotations

import gzip
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle
from unlearnkit.data.preprocess import PixelSource
from unlearnkit.data.registry import DATASETS
from unlearnkit.errors import UnlearnkitError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the four ``.gz`` files."""

PARTS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # 0x0803: uint8, 3 dims; 0x0801: uint8, 1 dim
SIDE, CLASSES = 28, 10
# Pixels stay in byte units (0..255, as stored) so that models trained before the preprocessing
# record keep their fingerprints. Without a public split: the published constants of each set
# (fixed, so no deletion can move them).
_FIXED = {
    "fashion_mnist": PixelSource(
        mean=(0.2860 * 255,),
        std=(0.3530 * 255,),
        note="fixed constants for fashion_mnist",
        pixel_max=255.0,
    ),
    "mnist": PixelSource(
        mean=(0.1307 * 255,), std=(0.3081 * 255,), note="fixed constants for mnist", pixel_max=255.0
    ),
}
# torchvision's download layout, so a folder it filled can be used as it is
_TORCHVISION_FOLDER = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _resolve_folder(name: str, data_dir: str | None) -> Path:
    first = PARTS["train"][0]
    if not data_dir:
        if name == "fashion_mnist":
            if _find(DEBIAN_FASHION_MNIST, first):
                return DEBIAN_FASHION_MNIST
            raise UnlearnkitError(
                f"fashion_mnist: no --data-dir and no files in {DEBIAN_FASHION_MNIST}; install "
                "them with 'apt-get install dataset-fashion-mnist', or pass --data-dir with the "
                "four IDX files (train-images-idx3-ubyte[.gz], ...)"
            )
        raise UnlearnkitError(
            f"{name} needs --data-dir: a folder with the four IDX files "
            "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...); "
            "nothing is downloaded"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UnlearnkitError(f"{name}: data dir {root} does not exist")
    candidates = [root, root / "raw", root / _TORCHVISION_FOLDER[name] / "raw"]
    for folder in candidates:
        if _find(folder, first):
            return folder
    raise UnlearnkitError(f"{name}: no {first}[.gz] in {root} (nor in raw/ below it)")


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UnlearnkitError(f"cannot read {path} (truncated or corrupt?): {exc}") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in an IDX file, checked against its header; a read-only view, no copy.

    ``magic`` is the expected magic number (2051 images, 2049 labels); it fixes the number of
    dimensions. Any disagreement between the header and the bytes is an UnlearnkitError that
    names the file.
    """
    data = _read(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise UnlearnkitError(
            f"{path} is truncated: {len(data)} bytes, less than its {header}-byte IDX header"
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise UnlearnkitError(
            f"{path} is not an IDX file of this kind: magic number {found}, expected {magic}"
        )
    dims = [int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4)]
    size = math.prod(dims)
    if len(data) != header + size:
        what = "is truncated" if len(data) < header + size else "has extra bytes"
        raise UnlearnkitError(
            f"{path} {what}: its header declares {' x '.join(map(str, dims))} values "
            f"({header + size:,} bytes with the header), the file holds {len(data):,} bytes"
        )
    return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(dims)


def _read_part(folder: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images N x 1 x 28 x 28 uint8, labels N int64) of the ``train`` or ``test`` files."""
    paths = []
    for stem in PARTS[part]:
        path = _find(folder, stem)
        if path is None:
            raise UnlearnkitError(f"no {stem}[.gz] in {folder}")
        paths.append(path)
    image_path, label_path = paths
    images = read_idx(image_path, IMAGE_MAGIC)
    if images.shape[1:] != (SIDE, SIDE):
        raise UnlearnkitError(
            f"{image_path} holds {images.shape[1]}x{images.shape[2]} images, expected {SIDE}x{SIDE}"
        )
    labels = read_idx(label_path, LABEL_MAGIC)
    if len(images) != len(labels):
        raise UnlearnkitError(
            f"{image_path.name} holds {len(images):,} images but {label_path.name} "
            f"{len(labels):,} labels (files from different sets?)"
        )
    bad = np.flatnonzero(labels >= CLASSES)
    if bad.size:
        raise UnlearnkitError(
            f"{label_path}: label {int(labels[bad[0]])} at position {int(bad[0])} is out of "
            f"range 0..{CLASSES - 1}"
        )
    with warnings.catch_warnings():
        # the view is read-only and stays so: assemble copies the rows it keeps into float32
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(images).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _load(
    name: str, data_dir: str | None, seed: int, public_fraction: float, subset: int | None
) -> DatasetBundle:
    folder = _resolve_folder(name, data_dir)
    train = _read_part(folder, "train")
    test = _read_part(folder, "test")
    return assemble(name, train, test, CLASSES, seed, public_fraction, subset, source=_FIXED[name])


@DATASETS.register("fashion_mnist")
def fashion_mnist(
    data_dir: str | None = None,
    seed: int = 0,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    """Zalando's Fashion-MNIST: 60,000 train / 10,000 test grey 28x28 images, 10 classes."""
    return _load("fashion_mnist", data_dir, seed, public_fraction, subset)


@DATASETS.register("mnist")
def mnist(
    data_dir: str | None = None,
    seed: int = 0,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    """MNIST (or any set in its IDX format and shape) from ``data_dir``."""
    return _load("mnist", data_dir, seed, public_fraction, subset)
