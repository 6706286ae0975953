"""scikit-learn's bundled 8x8 digits: the embedded default, nothing to download."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle, split_train_test
from unlearnkit.data.preprocess import PixelSource
from unlearnkit.data.registry import DATASETS

# Without a public split: fixed constants (mean and std of all 1,797 images, computed once and
# written down), so no deletion can move them.
DIGITS = PixelSource(
    mean=(0.3053,), std=(0.3761,), note="fixed constants for digits", raw_white=16.0
)


@DATASETS.register("digits")
def digits(
    data_dir: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    """1,797 grey 8x8 images, 10 classes; a fixed seeded train/test split."""
    raw = load_digits()
    # kept as uint8 (values 0..16); a batch becomes value / 16 in float32 when loaded
    x = torch.tensor(raw.images, dtype=torch.uint8).unsqueeze(1)
    y = torch.tensor(raw.target, dtype=torch.long)
    train, test = split_train_test(x, y, test_fraction, seed=seed)
    return assemble("digits", train, test, 10, seed, public_fraction, subset, source=DIGITS)
