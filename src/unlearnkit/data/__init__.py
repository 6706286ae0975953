"""Datasets (a registry of loaders) and forget-set selection."""

from __future__ import annotations

from unlearnkit.data import cifar, digits, imagefolder, mnist, noisy, synthetic  # noqa: F401 - registers
from unlearnkit.data.base import ArraySplit, DatasetBundle
from unlearnkit.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "ArraySplit", "DatasetBundle", "load_dataset"]
