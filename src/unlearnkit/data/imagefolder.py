"""A local folder of images, one sub-folder per class (torchvision's ImageFolder layout)."""

from __future__ import annotations

from pathlib import Path

import torch

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle, split_train_test
from unlearnkit.data.registry import DATASETS
from unlearnkit.errors import UnlearnkitError


def _load_folder(
    root: Path, image_size: int, classes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision import datasets, transforms  # deferred: torchvision costs ~1.5 s

    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])
    try:
        folder = datasets.ImageFolder(str(root), transform=tf)
    except (FileNotFoundError, OSError) as exc:
        raise UnlearnkitError(f"imagefolder: cannot read {root}: {exc}") from None
    if classes is not None and folder.classes != classes:
        raise UnlearnkitError(
            f"imagefolder: classes in {root} {folder.classes} differ from the "
            f"train classes {classes}"
        )
    images, labels = [], []
    for i in range(len(folder)):
        try:
            img, label = folder[i]
        except OSError as exc:
            raise UnlearnkitError(
                f"imagefolder: cannot decode {folder.samples[i][0]}: {exc}"
            ) from None
        images.append(img)
        labels.append(label)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), folder.classes


@DATASETS.register("imagefolder")
def imagefolder(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 32,
    test_fraction: float = 0.2,
    public_fraction: float = 0.0,
    subset: int | None = None,
) -> DatasetBundle:
    """Uses ``root/train`` and ``root/test`` when both exist, else a seeded split of ``root``."""
    if not data_dir:
        raise UnlearnkitError(
            "imagefolder needs --data-dir (a folder with one sub-folder per class)"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UnlearnkitError(f"imagefolder: data dir {root} does not exist")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x_tr, y_tr, classes = _load_folder(root / "train", image_size)
        x_te, y_te, _ = _load_folder(root / "test", image_size, classes)
        train, test = (x_tr, y_tr), (x_te, y_te)
    else:
        x, y, classes = _load_folder(root, image_size)
        train, test = split_train_test(x, y, test_fraction, seed)
    return assemble("imagefolder", train, test, len(classes), seed, public_fraction, subset)
