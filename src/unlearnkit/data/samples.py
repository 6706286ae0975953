"""The pixels of a split as an indexed source, decoded and preprocessed on access.

A :class:`Samples` object is a *view*: the stored pixels (one tensor shared by every part of a
data set, or the files of an image folder) plus the rows this view selects and the one
:class:`~unlearnkit.data.preprocess.Preprocessing` that turns stored pixels into model inputs.
Taking a subset, selecting ids or concatenating two views of the same store composes row
indices and never copies pixels, so no method, seed, shard or DataLoader worker holds a copy of
the data set. Built-in sets keep their pixels as stored (uint8 for digits, MNIST-format and
CIFAR); an image folder keeps paths and decodes a file only when a batch asks for it.

``load(rows)`` gives float32 model inputs: stored pixels -> (training augmentation) -> pixel
units -> ``(x - mean) / std``; done per element, so a batch is bit for bit the rows of what
the old decode-everything-up-front pipeline held.
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unlearnkit.data.paths import PathTable
from unlearnkit.data.preprocess import Interpolation, Preprocessing, image_pixels
from unlearnkit.errors import UnlearnkitError

if TYPE_CHECKING:
    from unlearnkit.data.transforms import Augmentation

Rows = torch.Tensor | Sequence[int] | slice | None


def _positions(rows: Rows, n: int) -> torch.Tensor | None:
    """View positions as a long tensor (None: every row), boolean masks included."""
    if rows is None:
        return None
    if isinstance(rows, slice):
        return torch.arange(n)[rows]
    index = torch.as_tensor(rows)
    if index.dtype == torch.bool:
        return torch.arange(n)[index]
    return index.reshape(-1).long()


@dataclass(frozen=True, eq=False)
class Samples(ABC):
    """Rows ``rows`` (None: all) of a pixel store, made model inputs by ``prep``.

    ``divisor`` turns stored 8-bit values into pixel units (a white pixel's stored value over
    ``prep.pixel_max``: 255 for 8-bit images read as [0, 1], 1 for MNIST-format in byte units,
    16 for scikit-learn's digits); stored floats are already in pixel units. ``prep`` None:
    inputs pass as stored (a split built by hand from a float tensor).
    """

    rows: torch.Tensor | None
    prep: Preprocessing | None
    divisor: float

    # -- what a store provides ----------------------------------------------------------------
    @property
    @abstractmethod
    def store_len(self) -> int: ...

    @property
    @abstractmethod
    def sample_shape(self) -> tuple[int, ...]: ...

    @abstractmethod
    def _stored(self, rows: torch.Tensor | None) -> torch.Tensor:
        """Stored pixels (uint8 or float, N x C x H x W) of store rows (None: all)."""

    @abstractmethod
    def _same_store(self, other: Samples) -> bool: ...

    @abstractmethod
    def _identity(self) -> bytes:
        """What names the store for a fingerprint without reading pixels (files) or b''."""

    # -- views --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store_len if self.rows is None else int(self.rows.numel())

    def store_rows(self, rows: Rows = None) -> torch.Tensor | None:
        """Store rows behind view positions ``rows`` (None: the whole view)."""
        pos = _positions(rows, len(self))
        if pos is None:
            return self.rows
        return pos if self.rows is None else self.rows[pos]

    def take(self, rows: Rows) -> Samples:
        """A view of some rows (positions or a boolean mask); no pixel is copied."""
        chosen = self.store_rows(rows)
        return replace(self, rows=chosen if chosen is not None else None)

    def concat(self, other: Samples) -> Samples:
        """This view followed by ``other``: a view of the shared store when both are views of
        the same store made the same way, else a materialised in-memory copy of both."""
        if self._same_store(other) and self.prep == other.prep and self.divisor == other.divisor:
            return replace(self, rows=torch.cat([self._all_rows(), other._all_rows()]))
        return TensorSamples.of(torch.cat([self.materialise(), other.materialise()]))

    def with_prep(self, prep: Preprocessing | None) -> Samples:
        return replace(self, prep=prep)

    def _all_rows(self) -> torch.Tensor:
        return torch.arange(self.store_len) if self.rows is None else self.rows

    # -- access -------------------------------------------------------------------------------
    @property
    def element_size(self) -> int:
        """Bytes per stored value (1 for uint8 stores, 0 for files kept on disk)."""
        return 0

    def pixels(self, rows: Rows = None) -> torch.Tensor:
        """Stored pixels of view positions ``rows``, before units and normalisation."""
        return self._stored(self.store_rows(rows))

    def units(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stored pixels -> a new float32 tensor in pixel units."""
        if pixels.dtype == torch.uint8:
            return pixels.to(torch.float32).div_(self.divisor)
        return pixels.to(torch.float32, copy=True)

    def load(
        self, rows: Rows = None, augment: Augmentation | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """Model inputs (float32; a hand-built float split keeps its dtype) of ``rows``.

        ``augment`` (training passes only) transforms the stored pixels of each sample, seeded
        by ``seed`` so the batch does not depend on which process made it."""
        pixels = self.pixels(rows)
        if augment is not None:
            pixels = augment.apply(pixels, 0 if seed is None else seed)
        if self.prep is None:
            return pixels if pixels.is_floating_point() else self.units(pixels)
        return self.prep.normalise_(self.units(pixels))

    def batches(self, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """Model inputs in view order, ``batch_size`` rows at a time (bounded memory)."""
        n = len(self)
        for start in range(0, n, batch_size):
            yield self.load(slice(start, min(start + batch_size, n)))

    def materialise(self) -> torch.Tensor:
        """Every row's model inputs as one float32 tensor: for small sets and old call sites;
        the bulk consumers iterate :meth:`batches` instead."""
        return self.load()

    def fingerprint_into(self, h: Any, batch_size: int = 1024) -> None:
        """Feed the view to a hash: the model inputs' bytes, batch by batch (the same digest
        as hashing the whole float tensor), or for files their names and the preprocessing."""
        ident = self._identity()
        if ident:
            h.update(ident)
            h.update(self._all_rows().numpy().tobytes())
            h.update((self.prep.model_dump_json() if self.prep else "").encode())
            return
        for batch in self.batches(batch_size):
            h.update(batch.contiguous().numpy().tobytes())


@dataclass(frozen=True, eq=False)
class TensorSamples(Samples):
    """A view of pixels held in memory (uint8 as read, or float in pixel units)."""

    storage: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor) -> TensorSamples:
        """Hand-built model inputs, used as given (``split.x`` returns this very tensor)."""
        if x.dim() < 1:
            raise ValueError("samples need a leading row dimension")
        return cls(rows=None, prep=None, divisor=1.0, storage=x)

    @property
    def store_len(self) -> int:
        return int(self.storage.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.storage.shape[1:])

    @property
    def element_size(self) -> int:
        return self.storage.element_size()

    def _stored(self, rows: torch.Tensor | None) -> torch.Tensor:
        return self.storage if rows is None else self.storage[rows]

    def _same_store(self, other: Samples) -> bool:
        return isinstance(other, TensorSamples) and other.storage is self.storage

    def __getstate__(self) -> dict[str, Any]:
        """A pickled view carries its own rows only: a shard job sent to another process (or a
        Ray task) ships that shard's pixels, not the whole store (same inputs, same dtype)."""
        state = dict(self.__dict__)
        if self.rows is not None:
            state["storage"] = self.storage[self.rows].clone()
            state["rows"] = None
        return state

    def _identity(self) -> bytes:
        return b""

    def load(
        self, rows: Rows = None, augment: Augmentation | None = None, seed: int | None = None
    ) -> torch.Tensor:
        whole = rows is None and self.rows is None and self.prep is None and augment is None
        if whole and self.storage.is_floating_point():
            return self.storage  # hand-built inputs: the tensor itself, as before
        return super().load(rows, augment, seed)


@dataclass(frozen=True, eq=False)
class FileSamples(Samples):
    """A view of image files under ``root``, decoded when a batch asks for them.

    ``files`` (relative to root, one per store row) is a :class:`PathTable`: two numpy arrays,
    not one Python object per file that every DataLoader worker would copy as it reads them
    (a sequence of str is converted)."""

    root: Path
    files: PathTable
    channels: int
    size: int
    resize: int
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        if not isinstance(self.files, PathTable):
            object.__setattr__(self, "files", PathTable.of(self.files))

    @property
    def store_len(self) -> int:
        return len(self.files)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)

    def _stored(self, rows: torch.Tensor | None) -> torch.Tensor:
        chosen = range(len(self.files)) if rows is None else rows.tolist()
        if not chosen:
            return torch.empty((0, *self.sample_shape), dtype=torch.uint8)
        return torch.stack([self.decode(i) for i in chosen])

    def decode(self, row: int) -> torch.Tensor:
        path = self.root / self.files[row]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnlearnkitError(f"imagefolder: cannot read {path}: {exc}") from None
        return decode_image(path, data, self.channels, self.size, self.resize, self.interpolation)

    def _same_store(self, other: Samples) -> bool:
        return isinstance(other, FileSamples) and (other.root, other.files) == (
            self.root,
            self.files,
        )

    def _identity(self) -> bytes:
        h = hashlib.sha256(self.files.joined())  # the digest of "\n".join(files), as before
        return f"files:{h.hexdigest()}:{self.sample_shape}".encode()


def decode_image(
    path: Path,
    data: bytes,
    channels: int,
    size: int,
    resize: int,
    interpolation: Interpolation = "bilinear",
) -> torch.Tensor:
    """An image file's bytes -> uint8 (C, size, size) through the one preprocessing path; an
    unreadable or truncated file is one line naming it."""
    from PIL import Image, UnidentifiedImageError  # deferred: only image folders need PIL

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a truncated file fails here, not later
            return image_pixels(img, channels, size, resize, interpolation)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnlearnkitError(f"imagefolder: cannot decode {path}: {exc}") from None


def check_image(path: Path, data: bytes) -> None:
    """Decode ``data`` once without keeping it (JPEGs at 1/8 scale, which still reads every
    byte of the scan), so an unreadable or truncated file is found before ids are given."""
    from PIL import Image, UnidentifiedImageError  # deferred: only image folders need PIL

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft(img.mode, (1, 1))
            img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnlearnkitError(f"imagefolder: cannot decode {path}: {exc}") from None
