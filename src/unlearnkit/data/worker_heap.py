"""Keep a DataLoader worker's heap from growing with every batch it makes (glibc).

A worker builds each batch in its own heap (decoded pixels, the float inputs), then the
DataLoader moves the batch into shared memory to send it and frees the heap copy. glibc's
``malloc`` serves blocks above its mmap threshold with ``mmap`` (returned to the system on
``free``), but it raises that threshold to the size of every mmapped block it frees (up to
32 MiB), so from the first batch on a batch-sized block comes from the heap, and freed heap
blocks fragment between the small objects allocated around them. Measured here (torch 2.14,
glibc 2.36, two workers, 100 batches of 256 x 3 x 96 x 96 float32): the workers' private memory
grew to 2.5 GB, the size of every batch ever sent; with the threshold pinned at 1 MiB it stayed
at 0.14 GB. Pinning the threshold (``mallopt(M_MMAP_THRESHOLD, ...)``, which also turns off the
dynamic adjustment) keeps every large block an ``mmap`` that ``free`` returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD_BYTES = 1 << 20


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (None elsewhere: musl and macOS do not grow this way)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def pin_mmap_threshold(threshold: int = THRESHOLD_BYTES) -> bool:
    """Serve blocks of ``threshold`` bytes and more with mmap in this process from now on;
    False where the C library is not glibc (nothing to do there)."""
    libc = glibc()
    return libc is not None and libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
