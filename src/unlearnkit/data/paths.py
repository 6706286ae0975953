"""Many relative file paths as two numpy arrays, not one Python ``str`` per file.

A DataLoader worker forked from the main process shares the parent's memory copy-on-write,
but reading a Python object writes to it (its reference count), so an epoch that reads every
file's ``str`` copies the pages holding them into every worker (PyTorch's "copy-on-read"
issue). A :class:`PathTable` keeps the paths as one uint8 buffer (utf-8, joined by ``\\n``)
and an int64 array of where each starts: reading a path copies its bytes out into a new
``str`` and writes nothing shared, and the table is two objects whatever the file count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

SEP = b"\n"


class PathTable(Sequence[str]):
    """An immutable sequence of paths: ``table[i]``, ``len``, iteration, ``take(rows)``."""

    __slots__ = ("_buffer", "_starts")

    def __init__(self, buffer: np.ndarray, starts: np.ndarray) -> None:
        # starts has one entry per path plus one past the end (len(buffer) + 1)
        self._buffer, self._starts = buffer, starts

    @classmethod
    def of(cls, paths: Iterable[str]) -> PathTable:
        encoded = [p.encode() for p in paths]
        lengths = np.fromiter((len(b) + 1 for b in encoded), dtype=np.int64, count=len(encoded))
        starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        buffer = np.frombuffer(SEP.join(encoded), dtype=np.uint8)
        return cls(buffer, starts)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"path {index} of {len(self)}")
        return self._buffer[self._starts[i] : self._starts[i + 1] - 1].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def take(self, rows: Sequence[int] | np.ndarray) -> PathTable:
        """A compact table of these rows, in this order."""
        return PathTable.of(self[int(i)] for i in np.asarray(rows, dtype=np.int64).reshape(-1))

    def __add__(self, other: PathTable) -> PathTable:
        return PathTable.of([*self, *other])

    def joined(self) -> bytes:
        """The paths joined by ``\\n`` (utf-8): what ``"\\n".join(paths).encode()`` gives."""
        return self._buffer.tobytes()

    def nbytes(self) -> int:
        return int(self._buffer.nbytes + self._starts.nbytes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PathTable):
            return other is self or (
                np.array_equal(self._starts, other._starts)
                and np.array_equal(self._buffer, other._buffer)
            )
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-free but compared by value

    def __repr__(self) -> str:
        return f"PathTable({len(self)} paths, {self.nbytes()} bytes)"
