"""What it costs to make an acknowledged deletion provable (issue 30): per accepted event,

- ``wal``: SQLite alone (WAL, synchronous=FULL): the old behaviour, not crash-proof against a
  lost or damaged WAL;
- ``mark``: the service's ledger: the WAL commit plus the fsynced two-slot high-water mark
  (``service.mark``), what ships;
- ``checkpoint``: the WAL commit plus ``PRAGMA wal_checkpoint(FULL)`` before acknowledging,
  the alternative the issue names (it still needs something outside the ledger to detect a
  lost ledger, so it would come on top of a mark).

Writes results/service/ledger_ack_cost.json (median and p99 ms per event, on the disk of
``--dir``). Run it on the machine that will serve, on a quiet disk:

    python benchmarks/ledger_ack_cost.py --events 2000 --dir /var/lib/unlearnkit/tmp
    python benchmarks/ledger_ack_cost.py --events 20      # a smoke run (a second)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from unlearnkit.service.ledger import Ledger


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
    }


def run_ledger(where: Path, events: int) -> list[float]:
    ledger = Ledger(where / "ledger.sqlite3", {"bench": "1"})
    times = []
    for i in range(events):
        start = time.perf_counter()
        ledger.append("deletion", "bench", {"sample_ids": [i]}, f"k{i}")
        times.append(time.perf_counter() - start)
    ledger.close()
    return times


def run_sqlite(where: Path, events: int, checkpoint: bool) -> list[float]:
    db = sqlite3.connect(where / "plain.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT, link TEXT)")
    times = []
    for i in range(events):
        start = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?)", (i + 1, f'{{"sample_ids": [{i}]}}', "x" * 64)
        )
        db.execute("COMMIT")
        if checkpoint:
            db.execute("PRAGMA wal_checkpoint(FULL)")
        times.append(time.perf_counter() - start)
    db.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (its disk is measured)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/service/ledger_ack_cost.json"))
    args = parser.parse_args()
    results = {}
    for name in ("wal", "mark", "checkpoint"):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            where = Path(tmp)
            if name == "mark":
                times = run_ledger(where, args.events)
            else:
                times = run_sqlite(where, args.events, checkpoint=name == "checkpoint")
        results[name] = _percentiles(times)
        got = results[name]
        print(f"{name:>10}: median {got['median_ms']:.3f} ms, p99 {got['p99_ms']:.3f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"events": args.events, "per_event": results}, indent=1))


if __name__ == "__main__":
    main()
