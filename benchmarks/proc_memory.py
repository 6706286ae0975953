"""Memory of a process and its children that counts shared pages once (Linux).

RSS counts every resident page a process maps, so a forked DataLoader worker's RSS includes
the pages it still shares with its parent, and main RSS + worker RSS counts them twice. USS
(unique set size: the private pages, what the worker alone costs) and PSS (proportional set
size: each shared page divided among the processes sharing it) do not. ``memory(pid)`` reads
them with psutil's ``memory_full_info`` when psutil is installed, else from
``/proc/PID/smaps_rollup``; ``MemoryWatch`` samples a process and its children in a thread
and keeps the peaks (benchmarks/data_scale.py runs it inside each CLI stage).
"""

from __future__ import annotations

import threading
from pathlib import Path

try:
    import psutil
except ImportError:  # the /proc fallback below
    psutil = None

MIB = 2**20
UNREADABLE = (OSError, KeyError, ValueError) + ((psutil.Error,) if psutil is not None else ())


def _rollup(pid: int) -> dict[str, int]:
    """rss, pss, uss in bytes from /proc/PID/smaps_rollup (values there are in kB)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    private = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": sum(fields.get(k, 0) for k in private),
    }


def memory(pid: int) -> dict[str, int] | None:
    """rss, pss and uss (bytes) of ``pid``; None when it has exited or cannot be read."""
    try:
        if psutil is not None:
            info = psutil.Process(pid).memory_full_info()
            return {"rss": info.rss, "pss": info.pss, "uss": info.uss}
        return _rollup(pid)
    except UNREADABLE:
        return None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (DataLoader workers are children of the stage process)."""
    if psutil is not None:
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parent_of.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


class MemoryWatch(threading.Thread):
    """Samples ``pid`` and its children every ``every_s`` seconds; ``peaks()`` in MiB.

    Peaks: the main process's RSS / PSS / USS; the largest single child's RSS / PSS / USS; the
    children's summed USS and PSS; and ``footprint``, the largest main RSS + summed children's
    USS seen at one sample (what the main process and its workers hold, shared pages once)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.stop_event = threading.Event()
        self.peak: dict[str, float] = {}
        self.samples = 0

    def _keep(self, key: str, value: float) -> None:
        self.peak[key] = max(self.peak.get(key, 0.0), value)

    def sample(self) -> None:
        main = memory(self.pid)
        if main is None:
            return
        kids = [m for m in (memory(c) for c in children(self.pid)) if m is not None]
        for key in ("rss", "pss", "uss"):
            self._keep(f"main_{key}", main[key])
            self._keep(f"worker_{key}", max((k[key] for k in kids), default=0))
        self._keep("workers_uss_sum", sum(k["uss"] for k in kids))
        self._keep("workers_pss_sum", sum(k["pss"] for k in kids))
        self._keep("footprint", main["rss"] + sum(k["uss"] for k in kids))
        self._keep("workers_seen", len(kids))
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.wait(self.every_s):
            self.sample()

    def peaks(self) -> dict[str, float]:
        """Stop sampling; the peaks in MiB (``workers_seen``: most children at one sample)."""
        self.stop_event.set()
        self.sample()
        out = {k: round(v / MIB, 1) for k, v in self.peak.items() if k != "workers_seen"}
        return {
            **out,
            "workers_seen": int(self.peak.get("workers_seen", 0)),
            "samples": self.samples,
        }
