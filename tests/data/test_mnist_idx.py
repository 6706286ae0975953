"""The IDX loader behind ``fashion_mnist`` and ``mnist``, on small files the tests write."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.data import mnist as mnist_module
from unlearnkit.errors import UnlearnkitError

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _images_file(images: np.ndarray, magic: int = 2051) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">4I", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def _labels_file(labels: np.ndarray, magic: int = 2049) -> bytes:
    return struct.pack(">2I", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def _put(folder, stem: str, data: bytes, gz: bool) -> None:
    (folder / (f"{stem}.gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)


def write_idx_set(folder, n_train=40, n_test=10, gz=True, seed=0, side=28):
    """Four IDX files with a class-dependent mean brightness; returns the raw arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for (images, labels), n in (
        ((TRAIN_IMAGES, TRAIN_LABELS), n_train),
        ((TEST_IMAGES, TEST_LABELS), n_test),
    ):
        y = np.arange(n) % 10
        x = rng.integers(0, 100, (n, side, side)) + 15 * y[:, None, None]
        _put(folder, images, _images_file(x), gz)
        _put(folder, labels, _labels_file(y), gz)
        arrays[images], arrays[labels] = x.astype(np.uint8), y
    return arrays


def test_gzipped_files_load_into_a_bundle(tmp_path):
    arrays = write_idx_set(tmp_path)
    bundle = load_dataset("mnist", str(tmp_path))
    assert bundle.name == "mnist" and bundle.public is None
    assert (bundle.num_classes, bundle.in_chans, bundle.image_size) == (10, 1, 28)
    assert bundle.train.x.shape == (40, 1, 28, 28) and bundle.train.x.dtype == torch.float32
    assert len(bundle.test) == 10
    assert torch.equal(bundle.train.ids, torch.arange(40))
    assert torch.equal(bundle.test.ids, torch.arange(10))
    assert torch.equal(bundle.train.y, torch.from_numpy(arrays[TRAIN_LABELS]))
    # no public split: standardised with MNIST's fixed constants (byte units), never with
    # statistics of D; the pixel order is the file's
    raw = torch.from_numpy(arrays[TRAIN_IMAGES]).float()
    expected = (raw - 0.1307 * 255) / (0.3081 * 255)
    assert torch.allclose(bundle.train.x[:, 0], expected, atol=1e-5)
    assert bundle.preprocessing.stats == "fixed constants for mnist"


def test_raw_and_gzipped_give_the_same_data_and_fingerprint(tmp_path):
    write_idx_set(tmp_path / "gz", gz=True)
    write_idx_set(tmp_path / "raw", gz=False)
    a = load_dataset("mnist", str(tmp_path / "gz"), public_fraction=0.3)
    b = load_dataset("mnist", str(tmp_path / "raw"), public_fraction=0.3)
    again = load_dataset("mnist", str(tmp_path / "gz"), public_fraction=0.3)
    assert a.fingerprint == b.fingerprint == again.fingerprint
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    other = load_dataset("mnist", str(tmp_path / "gz"), public_fraction=0.5)
    assert other.fingerprint != a.fingerprint


def test_public_split_and_normalisation_come_from_the_shared_helpers(tmp_path):
    write_idx_set(tmp_path, n_train=60)
    bundle = load_dataset("fashion_mnist", str(tmp_path), public_fraction=0.25)
    assert bundle.name == "fashion_mnist"
    assert len(bundle.public) == 15 and len(bundle.train) == 45
    assert torch.equal(bundle.train.ids, torch.arange(45))
    # statistics of the public part: it is standardised exactly, D only approximately
    assert abs(float(bundle.public.x.mean())) < 1e-5
    assert abs(float(bundle.public.x.std()) - 1) < 1e-4


def test_torchvision_layout_is_found(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw")
    assert len(load_dataset("fashion_mnist", str(tmp_path)).train) == 40
    write_idx_set(tmp_path / "m" / "raw", gz=False)
    assert len(load_dataset("mnist", str(tmp_path / "m")).train) == 40


def test_default_folder_is_the_debian_package(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "pkg")
    monkeypatch.setattr(mnist_module, "DEBIAN_FASHION_MNIST", tmp_path / "pkg")
    assert len(load_dataset("fashion_mnist").train) == 40


def _one_line_error(name, data_dir=None, match=None):
    with pytest.raises(UnlearnkitError, match=match) as info:
        load_dataset(name, data_dir)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    message = _one_line_error("fashion_mnist", match="apt-get install dataset-fashion-mnist")
    assert "--data-dir" in message
    _one_line_error("mnist", match="mnist needs --data-dir")
    _one_line_error("mnist", str(tmp_path / "nope"), match="does not exist")
    _one_line_error("mnist", str(tmp_path), match=rf"no {TRAIN_IMAGES}\[\.gz\]")
    write_idx_set(tmp_path)
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    _one_line_error("mnist", str(tmp_path), match=rf"no {TEST_LABELS}\[\.gz\] in")


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_images_name_the_file(tmp_path, gz):
    write_idx_set(tmp_path, gz=gz)
    x = np.zeros((40, 28, 28), dtype=np.uint8)
    _put(tmp_path, TRAIN_IMAGES, _images_file(x)[:-100], gz)  # header says 40, bytes for 39.9
    message = _one_line_error("mnist", str(tmp_path), match="is truncated")
    assert TRAIN_IMAGES in message and "40 x 28 x 28" in message


def test_a_header_shorter_than_16_bytes_is_truncated(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / TEST_IMAGES).write_bytes(struct.pack(">2I", 2051, 10))
    _one_line_error("mnist", str(tmp_path), match=f"{TEST_IMAGES} is truncated.*16-byte")


def test_a_cut_gzip_stream_is_a_clear_error(tmp_path):
    write_idx_set(tmp_path)
    path = tmp_path / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(path.read_bytes()[:200])
    _one_line_error("mnist", str(tmp_path), match=f"cannot read .*{TRAIN_IMAGES}.gz")
    path.write_bytes(b"this is not gzip at all")
    _one_line_error("mnist", str(tmp_path), match="truncated or corrupt")


def test_extra_bytes_are_refused(tmp_path):
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / TRAIN_LABELS
    path.write_bytes(path.read_bytes() + b"\x01\x02")
    _one_line_error("mnist", str(tmp_path), match=f"{TRAIN_LABELS} has extra bytes")


def test_wrong_magic_numbers(tmp_path):
    write_idx_set(tmp_path, gz=False)
    y = np.arange(40) % 10
    # a labels file where the images should be, and a header with an unknown magic number
    (tmp_path / TRAIN_IMAGES).write_bytes(_labels_file(y))
    _one_line_error("mnist", str(tmp_path), match="magic number 2049, expected 2051")
    (tmp_path / TRAIN_IMAGES).write_bytes(_images_file(np.zeros((40, 28, 28)), magic=2052))
    _one_line_error("mnist", str(tmp_path), match="magic number 2052")
    write_idx_set(tmp_path, gz=False)
    (tmp_path / TEST_LABELS).write_bytes(_labels_file(y[:10], magic=0x0802))
    _one_line_error("mnist", str(tmp_path), match=f"{TEST_LABELS} is not an IDX")


def test_image_size_other_than_28_is_refused(tmp_path):
    write_idx_set(tmp_path, side=27)
    _one_line_error("mnist", str(tmp_path), match="27x27 images, expected 28x28")


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx_set(tmp_path)
    _put(tmp_path, TRAIN_LABELS, _labels_file(np.arange(39) % 10), gz=True)
    _one_line_error("mnist", str(tmp_path), match="holds 40 images but .* 39 labels")


def test_labels_out_of_range(tmp_path):
    write_idx_set(tmp_path)
    y = np.arange(10) % 10
    y[7] = 10
    _put(tmp_path, TEST_LABELS, _labels_file(y), gz=True)
    _one_line_error("mnist", str(tmp_path), match="label 10 at position 7 is out of range 0..9")


def test_read_idx_is_a_view_on_the_decompressed_bytes(tmp_path):
    x = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 251
    path = tmp_path / "images"
    path.write_bytes(_images_file(x))
    arr = mnist_module.read_idx(path, mnist_module.IMAGE_MAGIC)
    assert arr.dtype == np.uint8 and arr.shape == (3, 28, 28) and not arr.flags.writeable
    assert np.array_equal(arr, x)


@pytest.mark.fashion_mnist
def test_real_fashion_mnist_from_the_debian_package():
    folder = mnist_module.DEBIAN_FASHION_MNIST
    if not (folder / f"{TRAIN_IMAGES}.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST is not installed in {folder} (apt-get install dataset-fashion-mnist)"
        )
    x, y = mnist_module._read_part(folder, "train")
    assert x.shape == (60_000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [6000] * 10
    bundle = load_dataset("fashion_mnist", public_fraction=0.3)
    assert len(bundle.public) + len(bundle.train) == 60_000 and len(bundle.test) == 10_000
    assert (len(bundle.public), len(bundle.train)) == (18_000, 42_000)
    assert torch.bincount(bundle.test.y).tolist() == [1000] * 10
    assert (bundle.num_classes, bundle.in_chans, bundle.image_size) == (10, 1, 28)
    assert torch.equal(bundle.train.ids, torch.arange(42_000))
    assert bundle.train.x.dtype == torch.float32
