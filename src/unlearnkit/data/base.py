"""Data splits with stable sample ids, so deletion requests can name samples."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from unlearnkit.data.manifest import Manifest
from unlearnkit.data.paths import PathTable
from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.data.samples import Samples, TensorSamples
from unlearnkit.errors import NotFoundError, UnlearnkitError


class ArraySplit:
    """Samples, labels ``y`` and their stable ``ids``.

    The pixels are a :class:`~unlearnkit.data.samples.Samples` view (``samples``): stored as
    read (uint8 for the built-in sets, paths for an image folder) and made model inputs on
    access through the data set's one Preprocessing. ``subset`` / ``select_ids`` /
    ``drop_ids`` are index views that copy no pixels. Bulk consumers read batches
    (``samples.batches`` / ``samples.load`` / ``unlearnkit.data.loader``); ``x`` materialises
    every row as one float32 tensor, for small sets and old call sites.
    """

    __slots__ = ("ids", "paths", "samples", "y")

    def __init__(
        self,
        x: torch.Tensor | Samples,
        y: torch.Tensor,
        ids: torch.Tensor,
        paths: Sequence[str] | None = None,
    ) -> None:
        self.samples = x if isinstance(x, Samples) else TensorSamples.of(x)
        self.y, self.ids = y, ids
        # the file behind each row (relative to the data folder), for data read from files: a
        # PathTable (two arrays), not a Python object per row for DataLoader workers to copy
        self.paths = paths if paths is None or isinstance(paths, PathTable) else PathTable.of(paths)
        n = len(self.samples)
        if self.y.shape != (n,) or self.ids.shape != (n,):
            raise ValueError(
                f"x, y, ids disagree in length: {n}, {tuple(self.y.shape)}, {tuple(self.ids.shape)}"
            )
        if self.paths is not None and len(self.paths) != n:
            raise ValueError(f"{len(self.paths)} paths for {n} rows")

    @property
    def x(self) -> torch.Tensor:
        """Every row's model inputs (float32, N x C x H x W), materialised on each access."""
        return self.samples.materialise()

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"ArraySplit({len(self)} rows, {type(self.samples).__name__})"

    def subset(self, index: torch.Tensor) -> ArraySplit:
        """Rows by position (int tensor) or by boolean mask; a view, no pixel is copied."""
        paths: PathTable | None = None
        if self.paths is not None:
            paths = self.paths.take(torch.arange(len(self))[index].reshape(-1).numpy())
        return ArraySplit(self.samples.take(index), self.y[index], self.ids[index], paths)

    def with_labels(self, y: torch.Tensor) -> ArraySplit:
        """The same samples with other labels (no pixel is copied)."""
        return ArraySplit(self.samples, y, self.ids, self.paths)

    def id_mask(self, ids: Iterable[int] | torch.Tensor) -> torch.Tensor:
        wanted = torch.as_tensor(
            list(ids) if not isinstance(ids, torch.Tensor) else ids, dtype=torch.long
        )
        return torch.isin(self.ids, wanted)

    def select_ids(self, ids: Iterable[int] | torch.Tensor) -> ArraySplit:
        """The samples with these ids; every id must be present."""
        wanted = torch.as_tensor(
            list(ids) if not isinstance(ids, torch.Tensor) else ids, dtype=torch.long
        )
        missing = wanted[~torch.isin(wanted, self.ids)]
        if missing.numel():
            raise NotFoundError(
                f"sample id {int(missing[0])} is not in this split "
                f"(valid ids: {int(self.ids.min())}..{int(self.ids.max())})"
            )
        return self.subset(torch.isin(self.ids, wanted))

    def drop_ids(self, ids: Iterable[int] | torch.Tensor) -> ArraySplit:
        return self.subset(~self.id_mask(ids))

    def fingerprint(self) -> str:
        """A short content hash: detects a checkpoint or score file made for other data.

        In-memory pixels are hashed as model inputs batch by batch (the digest of the whole
        float tensor, without holding it); files by their names and the preprocessing."""
        h = hashlib.sha256()
        self.samples.fingerprint_into(h)
        for t in (self.y, self.ids):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def concat_splits(a: ArraySplit, b: ArraySplit) -> ArraySplit:
    """``a``'s rows then ``b``'s: an index view when both are views of one data set."""
    paths = a.paths + b.paths if a.paths is not None and b.paths is not None else None
    return ArraySplit(
        a.samples.concat(b.samples), torch.cat([a.y, b.y]), torch.cat([a.ids, b.ids]), paths
    )


@dataclass
class DatasetBundle:
    """A data set as the rest of the toolkit sees it: private train set D, test set, public part."""

    name: str
    train: ArraySplit
    test: ArraySplit
    num_classes: int
    in_chans: int
    image_size: int
    public: ArraySplit | None = None
    # how pixels became ``x`` (saved with every model; None only for a bundle built by hand)
    preprocessing: Preprocessing | None = None
    skipped: tuple[str, ...] = ()  # unreadable files left out (ImageFolder's skip_bad_images)
    # rows of the training pool the loader gave ``assemble`` that became D (in id order) and
    # the public part: lets a loader name the file behind each id
    pool_rows: dict[str, torch.Tensor | None] | None = None
    manifest: Manifest | None = None  # ImageFolder: every file, its part and id

    @property
    def fingerprint(self) -> str:
        """Content hash of D (a manifest's, for a folder of files: no pixels are hashed)."""
        if self.manifest is not None:
            prep = self.preprocessing.model_dump_json() if self.preprocessing else ""
            digest = hashlib.sha256((self.manifest.digest() + prep).encode()).hexdigest()[:16]
            return f"{self.name}-m{digest}"
        return f"{self.name}-{self.train.fingerprint()}"


def make_split(x: torch.Tensor, y: torch.Tensor) -> ArraySplit:
    """Build a split whose ids are the positions 0..N-1."""
    return ArraySplit(x.float().contiguous(), y.long().contiguous(), torch.arange(len(y)))


def seeded_permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def split_train_test(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A fixed seeded split (same seed -> same split on every machine)."""
    if not 0.0 < test_fraction < 1.0:
        raise UnlearnkitError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = seeded_permutation(len(y), seed)
    n_test = max(1, round(len(y) * test_fraction))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (shape 1 x C x 1 x 1) of float images."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return mean, std


def stratified_sample(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Sorted positions of ``n`` rows drawn per class in proportion to the class counts.

    Each class gets ``floor(n * count / total)`` rows; the rows left over go one each to the
    classes with the largest remainders (ties: the smaller label). Within a class the rows are
    a seeded random draw, so the same ``y``, ``n`` and ``seed`` give the same rows everywhere.
    """
    total = len(y)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= total:
        raise UnlearnkitError(f"subset must be an integer in 2..{total} (the pool size), got {n!r}")
    labels, counts = torch.unique(y, return_counts=True)
    quota = counts * n // total
    remainder = counts * n % total
    leftover = n - int(quota.sum())
    order = torch.sort(-remainder, stable=True).indices  # largest remainder first
    quota[order[:leftover]] += 1
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    chosen = []
    for label, k in zip(labels.tolist(), quota.tolist(), strict=True):
        rows = (y == label).nonzero().flatten()
        chosen.append(rows[torch.randperm(len(rows), generator=gen)[:k]])
    return torch.cat(chosen).sort().values
