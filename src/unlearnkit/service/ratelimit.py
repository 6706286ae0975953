"""Per-token rate limit: one token bucket per client name.

A bucket holds up to ``burst`` requests and refills at ``rate`` requests per second. A request
takes one; an empty bucket refuses it and says how long until one is back (the ``Retry-After``
of the 429). ``rate`` 0 turns the limit off.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = float(rate), int(burst), clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, name: str) -> float:
        """Take one request from ``name``'s bucket: 0.0 if allowed, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The Retry-After header value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait_s)))
