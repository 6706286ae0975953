"""A local folder of images, one sub-folder per class (torchvision's ImageFolder layout).

Every image goes through :func:`unlearnkit.data.preprocess.image_pixels`: the shorter side is
resized to ``image_size`` and the centre square cropped (never squashed), kept as uint8; the
service decodes the images it is sent the same way. Samples are ordered by sorted relative
path, so ids do not depend on the file system's listing order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle, split_train_test
from unlearnkit.data.preprocess import PixelSource, image_pixels
from unlearnkit.data.registry import DATASETS
from unlearnkit.errors import UnlearnkitError

# the file types torchvision's ImageFolder reads
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CHANNELS = 3


def imagefolder_source(image_size: int) -> PixelSource:
    """Without a public split: ImageNet's per-channel constants (fixed, never D's)."""
    return PixelSource(
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        note="fixed constants for imagefolder (ImageNet's)",
        resize=image_size,
    )


def scan_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) by sorted relative path, and the sorted class names; a folder that cannot
    make a classification set (no classes, one class, an empty class) is a clear error."""
    try:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError as exc:
        raise UnlearnkitError(f"imagefolder: cannot read {root}: {exc}") from None
    if not classes:
        raise UnlearnkitError(f"imagefolder: {root} has no class sub-folders")
    if len(classes) == 1:
        raise UnlearnkitError(
            f"imagefolder: {root} has one class folder ({classes[0]!r}); a classifier needs "
            "at least two"
        )
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
        )
        if not files:
            raise UnlearnkitError(
                f"imagefolder: class folder {root / name} holds no images ({', '.join(EXTENSIONS)})"
            )
        samples += [(p, label) for p in files]
    return samples, classes


def _decode(path: Path, image_size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError  # deferred: only image folders need PIL

    try:
        with Image.open(path) as img:
            img.load()  # a truncated file fails here, not later
            return image_pixels(img, CHANNELS, image_size, image_size)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnlearnkitError(f"imagefolder: cannot decode {path}: {exc}") from None


def _load_folder(
    root: Path, image_size: int, skip_bad: bool, classes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """uint8 images, labels, class names and the files skipped as unreadable."""
    samples, found = scan_folder(root)
    if classes is not None and found != classes:
        raise UnlearnkitError(
            f"imagefolder: classes in {root} {found} differ from the train classes {classes}"
        )
    images, labels, skipped = [], [], []
    for path, label in samples:
        try:
            images.append(_decode(path, image_size))
        except UnlearnkitError:
            if not skip_bad:
                raise
            skipped.append(str(path))
            continue
        labels.append(label)
    if not images:
        raise UnlearnkitError(f"imagefolder: no readable image in {root}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), found, skipped


@DATASETS.register("imagefolder")
def imagefolder(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 32,
    test_fraction: float = 0.2,
    public_fraction: float = 0.0,
    subset: int | None = None,
    skip_bad_images: bool = False,
) -> DatasetBundle:
    """Uses ``root/train`` and ``root/test`` when both exist, else a seeded split of ``root``.

    ``skip_bad_images``: leave unreadable or truncated files out (a warning gives the count;
    the bundle lists them in ``skipped``) instead of stopping at the first one.
    """
    if not data_dir:
        raise UnlearnkitError(
            "imagefolder needs --data-dir (a folder with one sub-folder per class)"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UnlearnkitError(
            f"imagefolder: image_size must be a positive integer, got {image_size!r}"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UnlearnkitError(f"imagefolder: data dir {root} does not exist")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x_tr, y_tr, classes, bad = _load_folder(root / "train", image_size, skip_bad_images)
        x_te, y_te, _, bad_te = _load_folder(root / "test", image_size, skip_bad_images, classes)
        train, test, bad = (x_tr, y_tr), (x_te, y_te), bad + bad_te
    else:
        x, y, classes, bad = _load_folder(root, image_size, skip_bad_images)
        train, test = split_train_test(x, y, test_fraction, seed)
    if bad:
        warnings.warn(
            f"imagefolder: skipped {len(bad)} unreadable image(s), first {bad[0]}", stacklevel=2
        )
    bundle = assemble(
        "imagefolder",
        train,
        test,
        len(classes),
        seed,
        public_fraction,
        subset,
        source=imagefolder_source(image_size),
    )
    bundle.skipped = tuple(bad)
    return bundle
