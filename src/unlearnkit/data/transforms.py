"""Training augmentation presets (torchvision.transforms.v2), chosen by name and seeded.

Augmentation runs only in training passes (``unlearnkit.training.train`` with a recipe whose
``augment`` names a preset); evaluation, the NTK, memorization scores and the service see the
saved :class:`~unlearnkit.data.preprocess.Preprocessing` alone. A preset transforms each
sample's *stored* pixels (uint8 after the resize + centre crop, or pixel units for float
stores) before the shared normalisation, so the geometry and statistics are the same ones
evaluation uses.

Randomness: each batch carries its own seed (drawn from the training seed, the epoch and the
step), and the transforms draw from torch's global generator forked and seeded with it. So a
run is reproducible, and a batch is the same whichever DataLoader worker (or the main process)
makes it.

Presets:
- ``none``: no augmentation (the default everywhere; digits never need more).
- ``pad_crop_flip``: 4-pixel zero padding, random crop back to size, horizontal flip (small
  images, CIFAR style; at 8x8 use a smaller pad or ``none``).
- ``resized_crop_flip``: random-resized-crop of the model-input square (scale 0.35..1, aspect
  3/4..4/3) back to size, horizontal flip (large images, ImageNet style; it crops the resized,
  centre-cropped image rather than the original file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearnkit.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Augmentation:
    """A per-sample transform of stored pixels (C x H x W), applied with a batch seed."""

    name: str
    transform: Transform

    def apply(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        """Each sample of ``pixels`` (N x C x H x W) transformed, seeded by ``seed``."""
        if len(pixels) == 0:
            return pixels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([self.transform(p) for p in pixels])


AUGMENTATIONS: Registry[Augmentation | None] = Registry("augmentation")


@AUGMENTATIONS.register("none")
def no_augmentation(size: int) -> Augmentation | None:
    """Inputs exactly as evaluation sees them."""
    return None


@AUGMENTATIONS.register("pad_crop_flip")
def pad_crop_flip(size: int) -> Augmentation:
    """Zero-pad by size/8 (4 px at 32 px), random crop back to size, horizontal flip."""
    from torchvision.transforms import v2  # deferred: torchvision is slow to import

    pad = max(1, size // 8)
    return Augmentation(
        "pad_crop_flip",
        v2.Compose([v2.RandomCrop(size, padding=pad, fill=0), v2.RandomHorizontalFlip()]),
    )


@AUGMENTATIONS.register("resized_crop_flip")
def resized_crop_flip(size: int) -> Augmentation:
    """Random-resized-crop (scale 0.35..1) back to size, antialiased, horizontal flip."""
    from torchvision.transforms import v2  # deferred: torchvision is slow to import

    return Augmentation(
        "resized_crop_flip",
        v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        ),
    )


def make_augmentation(name: str, size: int) -> Augmentation | None:
    """The preset ``name`` for ``size`` x ``size`` inputs (None for ``none``)."""
    return AUGMENTATIONS.get(name)(size)


def batch_seed(seed: int, epoch: int, step: int) -> int:
    """The augmentation seed of one batch: a function of the run's seed and its position."""
    return (seed * 1_000_003 + epoch * 100_003 + step) % (2**63 - 1)
