"""CIFAR-10/100 from the standard python-pickle batches in a local directory (no download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle
from unlearnkit.data.preprocess import PixelSource
from unlearnkit.data.registry import DATASETS
from unlearnkit.errors import UnlearnkitError

# Without a public split: the published per-channel constants of each training set (fixed, so
# no deletion can move them).
_FIXED = {
    "cifar10": PixelSource(
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        note="fixed constants for cifar10",
    ),
    "cifar100": PixelSource(
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        note="fixed constants for cifar100",
    ),
}

_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        b"labels",
        10,
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}


def _resolve_root(data_dir: str | None, subdir: str, first_file: str, name: str) -> Path:
    if not data_dir:
        raise UnlearnkitError(
            f"{name} needs --data-dir pointing at the extracted '{subdir}' "
            "folder (nothing is downloaded)"
        )
    root = Path(data_dir).expanduser()
    for candidate in (root, root / subdir):
        if (candidate / first_file).is_file():
            return candidate
    raise UnlearnkitError(f"{name}: no '{first_file}' in {root} or {root / subdir}")


def _read_batches(
    root: Path, files: list[str], label_key: bytes
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in files:
        path = root / name
        try:
            with path.open("rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(batch[label_key], dtype=np.int64)
        except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
            raise UnlearnkitError(f"cannot read CIFAR batch {path}: {exc}") from None
        xs.append(torch.from_numpy(data.copy()))  # uint8: assemble converts the rows it keeps
        ys.append(torch.from_numpy(labels))
    return torch.cat(xs), torch.cat(ys)


def _cifar(
    name: str, data_dir: str | None, seed: int, public_fraction: float, subset: int | None
) -> DatasetBundle:
    subdir, train_files, test_files, label_key, classes = _LAYOUT[name]
    root = _resolve_root(data_dir, subdir, train_files[0], name)
    train = _read_batches(root, train_files, label_key)
    test = _read_batches(root, test_files, label_key)
    return assemble(name, train, test, classes, seed, public_fraction, subset, source=_FIXED[name])


@DATASETS.register("cifar10")
def cifar10(
    data_dir: str | None = None,
    seed: int = 0,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    return _cifar("cifar10", data_dir, seed, public_fraction, subset)


@DATASETS.register("cifar100")
def cifar100(
    data_dir: str | None = None,
    seed: int = 0,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    return _cifar("cifar100", data_dir, seed, public_fraction, subset)
