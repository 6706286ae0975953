"""The preprocessing record: JSON round trip, one arithmetic for every path, and normalisation
constants that no deletion can move (issue 29 item 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit.data.assemble as assemble_module
from unlearnkit.data import load_dataset
from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.errors import UnlearnkitError

FORGET = [0, 5, 17, 200, 311]  # ids of D


def _same_data_without(full, fresh, ids) -> None:
    """``fresh`` (loaded as if ``ids`` had never been in the pool) is, bit for bit, ``full``
    with those ids deleted: same constants, same remaining rows, same test and public data."""
    assert fresh.preprocessing == full.preprocessing
    kept = full.train.drop_ids(ids)
    assert torch.equal(fresh.train.ids, kept.ids)
    assert torch.equal(fresh.train.x, kept.x) and torch.equal(fresh.train.y, kept.y)
    assert torch.equal(fresh.test.x, full.test.x)
    if full.public is not None:
        assert torch.equal(fresh.public.x, full.public.x)
    assert fresh.train.fingerprint() == kept.fingerprint()


@pytest.mark.parametrize(
    ("name", "options", "stats"),
    [
        ("digits", {"public_fraction": 0.3}, "public split"),
        ("digits", {"public_fraction": 0.0}, "fixed constants for digits"),
        ("synthetic", {"n_train": 400, "n_test": 40, "image_size": 8}, "fixed constants"),
    ],
)
def test_deleting_samples_cannot_change_the_constants(name, options, stats):
    full = load_dataset(name, **options)
    assert full.preprocessing.stats.startswith(stats)
    _same_data_without(full, load_dataset(name, leave_out=FORGET, **options), FORGET)


@pytest.mark.parametrize("public_fraction", [0.3, 0.0])
def test_a_constant_computed_on_d_would_be_caught(monkeypatch, public_fraction):
    """The check has teeth: the old behaviour (statistics of all of D when there is no public
    split) makes the data assembled without F differ from the data with F deleted."""
    monkeypatch.setattr(assemble_module, "statistics_rows", lambda public, private: private)
    full = load_dataset("digits", public_fraction=public_fraction)
    fresh = load_dataset("digits", public_fraction=public_fraction, leave_out=FORGET)
    assert fresh.preprocessing.mean != full.preprocessing.mean
    with pytest.raises(AssertionError):
        _same_data_without(full, fresh, FORGET)


def test_record_round_trips_and_validates():
    prep = load_dataset("digits", public_fraction=0.3).preprocessing
    assert Preprocessing.from_json(prep.to_json()) == prep
    assert Preprocessing.from_json(prep.model_dump_json()) == prep
    with pytest.raises(UnlearnkitError, match="mean and std need 1 values"):
        Preprocessing.from_json({**prep.to_json(), "mean": [0.1, 0.2]})
    with pytest.raises(UnlearnkitError, match="malformed"):
        Preprocessing.from_json({**prep.to_json(), "colour": 1})


def test_every_path_uses_the_same_arithmetic():
    """8-bit pixels, [0, 1] arrays and the training data meet in the same float32 numbers."""
    bundle = load_dataset("digits", public_fraction=0.3)
    prep = bundle.preprocessing
    pixels = prep.to_uint8(bundle.test.x[:50])
    from_png = prep.from_uint8(pixels)
    from_array = prep.from_unit_range(pixels.float() / 255.0)
    assert torch.equal(from_png, from_array)
    # and the same formula training used, bit for bit
    units = pixels.float() / 255.0
    mean = torch.tensor(prep.mean).view(1, 1, 1, 1)
    std = torch.tensor(prep.std).view(1, 1, 1, 1)
    assert torch.equal(from_png, (units - mean) / std)
    with pytest.raises(UnlearnkitError, match=r"takes \(N, 1, 8, 8\)"):
        prep.from_unit_range(torch.zeros(2, 1, 9, 9))


def test_byte_unit_sets_take_unit_range_arrays(tmp_path):
    """MNIST-format statistics are in byte units; a [0, 1] array is scaled to them."""
    prep = Preprocessing.from_stats((33.3,), (78.6,), 4, "t", pixel_max=255.0)
    pixels = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8)
    expected = (pixels.float() - 33.3) / 78.6
    torch.testing.assert_close(prep.from_uint8(pixels), expected)
    torch.testing.assert_close(prep.from_unit_range(pixels.float() / 255), expected)


def test_images_are_resized_on_the_shorter_side_and_centre_cropped():
    from PIL import Image

    prep = Preprocessing.from_stats((0.5,) * 3, (0.25,) * 3, 8, "t")
    wide = np.zeros((8, 24, 3), dtype=np.uint8)
    wide[:, 8:16] = 255  # a white centre square between black borders
    out = prep.image_pixels(Image.fromarray(wide))
    assert out.shape == (3, 8, 8) and out.dtype == torch.uint8
    assert int(out.min()) == 255  # the centre square only: not squashed
    small = prep.image_pixels(Image.fromarray(np.full((4, 6), 128, dtype=np.uint8)))
    assert small.shape == (3, 8, 8) and int(small.float().std()) == 0
