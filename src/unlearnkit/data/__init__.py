"""Datasets (a registry of loaders) and forget-set selection."""

from __future__ import annotations

import inspect

from unlearnkit.data import cifar, digits, imagefolder, synthetic  # noqa: F401 - registers
from unlearnkit.data.base import ArraySplit, DatasetBundle
from unlearnkit.data.registry import DATASETS
from unlearnkit.errors import UnlearnkitError

__all__ = ["DATASETS", "ArraySplit", "DatasetBundle", "load_dataset"]


def load_dataset(
    name: str = "digits", data_dir: str | None = None, seed: int = 0, **options: object
) -> DatasetBundle:
    """Load a registered data set; unknown options are rejected by name."""
    loader = DATASETS.get(name)
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UnlearnkitError(
            f"dataset {name!r} has no option {unknown[0]!r}; "
            f"options: {', '.join(sorted(accepted - {'data_dir', 'seed'}))}"
        )
    return loader(data_dir=data_dir, seed=seed, **options)
