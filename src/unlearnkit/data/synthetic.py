"""Random images of any size: for timing and scaling benchmarks, never for accuracy claims."""

from __future__ import annotations

import torch

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle
from unlearnkit.data.preprocess import PixelSource
from unlearnkit.data.registry import DATASETS
from unlearnkit.errors import UnlearnkitError


@DATASETS.register("synthetic")
def synthetic(
    data_dir: str | None = None,
    seed: int = 0,
    n_train: int = 1000,
    n_test: int = 200,
    image_size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    """Class-dependent mean patterns plus noise, so models can learn something."""
    for field, value in {
        "n_train": n_train,
        "n_test": n_test,
        "image_size": image_size,
        "channels": channels,
    }.items():
        if value < 1:
            raise UnlearnkitError(f"synthetic: {field} must be >= 1, got {value}")
    if num_classes < 2:
        raise UnlearnkitError(f"synthetic: num_classes must be >= 2, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, channels, image_size, image_size, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(num_classes, (n,), generator=g)
        x = prototypes[y] + 2.0 * torch.randn(n, channels, image_size, image_size, generator=g)
        return x, y

    train, test = draw(n_train), draw(n_test)
    # prototype N(0, 1) + 2 N(0, 1): mean 0 and std sqrt(5) by construction, whatever the draw
    source = PixelSource(mean=(0.0,), std=(5**0.5,), note="fixed constants for synthetic")
    return assemble(
        "synthetic", train, test, num_classes, seed, public_fraction, subset, source=source
    )
