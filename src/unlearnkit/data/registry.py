"""The dataset registry (digits, cifar10, cifar100, imagefolder, synthetic)."""

from __future__ import annotations

from unlearnkit.data.base import DatasetBundle
from unlearnkit.registry import Registry

DATASETS: Registry[DatasetBundle] = Registry("dataset")
