"""A local folder of images, one sub-folder per class (torchvision's ImageFolder layout).

The data set is kept as paths (``unlearnkit.data.samples.FileSamples``): each file is read
and checked once when the data set is loaded (for the manifest, and so that an unreadable file
is found before ids are given), and decoded again only when a batch asks for it, through
:func:`unlearnkit.data.preprocess.image_pixels`: the shorter side is resized to
``image_size`` and the centre square cropped (never squashed); the service decodes the images
it is sent the same way. Samples are ordered by sorted relative
path, so ids do not depend on the file system's listing order, and the bundle's manifest
(``unlearnkit.data.manifest``) names the file behind every id.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from unlearnkit.data.assemble import assemble
from unlearnkit.data.base import DatasetBundle, split_train_test
from unlearnkit.data.manifest import FileEntry, Manifest, file_entry, unchanged_entry
from unlearnkit.data.paths import PathTable
from unlearnkit.data.preprocess import PixelSource
from unlearnkit.data.registry import DATASETS
from unlearnkit.data.samples import FileSamples, check_image
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


@dataclass
class _Part:
    files: list[FileEntry]  # one per readable image, in order
    labels: torch.Tensor
    skipped: list[FileEntry]


def _load_folder(
    data_root: Path,
    root: Path,
    skip_bad: bool,
    classes: list[str] | None = None,
    known: dict[str, FileEntry] | None = None,
) -> tuple[_Part, list[str]]:
    """The readable images of ``root`` (paths relative to ``data_root``) and its class names.

    Each file is read once for its manifest entry (size and content hash) and decoded once to
    check it (JPEGs at reduced scale), but its pixels are not kept: batches decode on demand.
    A file ``known`` (a checked manifest's entries) with the same label, size and mtime is
    neither read nor decoded: its entry is the recorded one (a reopened model costs a stat per
    file, not a read)."""
    samples, found = scan_folder(root)
    if classes is not None and found != classes:
        raise UnlearnkitError(
            f"imagefolder: classes in {root} {found} differ from the train classes {classes}"
        )
    labels, files, skipped = [], [], []
    for path, label in samples:
        recorded = unchanged_entry(known, data_root, path, label)
        if recorded is not None and (recorded.part != "skipped" or skip_bad):
            entry = replace(recorded, part="train", id=-1)
            if recorded.part == "skipped":
                skipped.append(replace(entry, part="skipped"))
            else:
                labels.append(label)
                files.append(entry)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnlearnkitError(f"imagefolder: cannot read {path}: {exc}") from None
        entry = file_entry(data_root, path, label, data)
        try:
            check_image(path, data)
        except UnlearnkitError:
            if not skip_bad:
                raise
            skipped.append(replace(entry, part="skipped"))
            continue
        labels.append(label)
        files.append(entry)
    if not files:
        raise UnlearnkitError(f"imagefolder: no readable image in {root}")
    return _Part(files, torch.tensor(labels, dtype=torch.long), skipped), found


def _files(root: Path, entries: list[FileEntry], image_size: int) -> FileSamples:
    """The entries' images, decoded on demand at ``image_size`` (shorter side, centre crop)."""
    return FileSamples(
        rows=None,
        prep=None,
        divisor=255.0,
        root=root,
        files=PathTable.of(e.path for e in entries),
        channels=CHANNELS,
        size=image_size,
        resize=image_size,
    )


def folder_files(root: Path) -> list[tuple[Path, int]]:
    """Every (file, label) an ImageFolder data set at ``root`` reads (both parts if split)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, _ = scan_folder(root / "train")
        test, _ = scan_folder(root / "test")
        return train + test
    return scan_folder(root)[0]


def check_folder(root: Path, manifest: Manifest, verify_content: bool = False) -> None:
    """A file added, removed or changed since ``manifest`` was made: one line naming it (a stat
    per file; ``verify_content``: every file read and hashed, see ``Manifest.check_folder``)."""
    if not root.is_dir():
        raise UnlearnkitError(f"imagefolder: data dir {root} does not exist")
    manifest.check_folder(root, folder_files(root), verify_content)


def _manifest(bundle: DatasetBundle, pool: list[FileEntry], test: list[FileEntry],
              skipped: list[FileEntry]) -> Manifest:  # fmt: skip
    """Which file became which sample: D rows get their ids, the rest their part."""
    rows = bundle.pool_rows or {}
    entries = [replace(e, part="test") for e in test] + skipped
    for i, row in zip(bundle.train.ids.tolist(), rows["train"].tolist(), strict=True):
        entries.append(replace(pool[row], part="train", id=i))
    if rows.get("public") is not None:
        entries += [replace(pool[row], part="public") for row in rows["public"].tolist()]
    used = set(rows["train"].tolist())
    if rows.get("public") is not None:
        used |= set(rows["public"].tolist())
    # pool files that --subset (or a leave-out) did not take: listed, so the folder still
    # matches the manifest when the model is opened again
    entries += [replace(e, part="unused") for r, e in enumerate(pool) if r not in used]
    return Manifest(tuple(sorted(entries, key=lambda e: e.path)))


@DATASETS.register("imagefolder")
def imagefolder(
    data_dir: str | None = None,
    seed: int = 0,
    image_size: int = 32,
    test_fraction: float = 0.2,
    public_fraction: float = 0.0,
    subset: int | None = None,
    skip_bad_images: bool = False,
    known: Manifest | None = None,
) -> DatasetBundle:
    """Uses ``root/train`` and ``root/test`` when both exist, else a seeded split of ``root``.

    ``skip_bad_images``: leave unreadable or truncated files out (a warning gives the count;
    the bundle lists them in ``skipped``) instead of stopping at the first one. The bundle's
    ``manifest`` names the file behind every sample. ``known``: the manifest of a model being
    reopened, already checked against the folder (``check_folder``): its files are not read
    again.
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
    recorded = known.by_path() if known is not None else None
    if (root / "train").is_dir() and (root / "test").is_dir():
        tr, classes = _load_folder(root, root / "train", skip_bad_images, known=recorded)
        te, _ = _load_folder(root, root / "test", skip_bad_images, classes, recorded)
        pool, test_files, bad = tr.files, te.files, tr.skipped + te.skipped
        y_pool, y_test = tr.labels, te.labels
    else:
        part, classes = _load_folder(root, root, skip_bad_images, known=recorded)
        (tr_rows, y_pool), (te_rows, y_test) = split_train_test(
            torch.arange(len(part.labels)), part.labels, test_fraction, seed
        )
        pool = [part.files[i] for i in tr_rows.tolist()]
        test_files = [part.files[i] for i in te_rows.tolist()]
        bad = part.skipped
    train = (_files(root, pool, image_size), y_pool)
    test = (_files(root, test_files, image_size), y_test)
    if bad:
        warnings.warn(
            f"imagefolder: skipped {len(bad)} unreadable image(s), first {root / bad[0].path}",
            stacklevel=2,
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
    bundle.skipped = tuple(str(root / e.path) for e in bad)
    bundle.manifest = _manifest(bundle, pool, test_files, bad)
    bundle.train.paths = PathTable.of(pool[r].path for r in bundle.pool_rows["train"].tolist())
    return bundle
