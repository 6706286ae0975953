"""What a snapshot costs the deletion after it (issue 26: deletion p99 under prediction load).

In process, on a saved S3T/SISA ensemble: ``--clients`` threads predict 16 images back to back
while one client sends single-id deletions back to back (samples of shard 0's first slice); the
service snapshots every ``--every`` deletions. For each deletion, the applier's ``queue`` phase
(from acceptance to the applier taking it) is recorded with its index, so the deletions right
after a snapshot can be read off. Three arms, side by side in one run, each on a fresh copy of
the ensemble: snapshots captured as a full deep copy of the served model (what the service did
before ``snapshot_copy``), snapshots captured by ``snapshot_copy`` (the default), and no
snapshot during the stream.

    python benchmarks/snapshot_queue.py --ensemble runs/centre --out results/fashion_mnist/service
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from _harness import write_report

from unlearnkit.exact import load_ensemble
from unlearnkit.metrics.latency import latency_summary
from unlearnkit.runtime import apply_threads
from unlearnkit.service import DeletionService, ServiceConfig
from unlearnkit.service.auth import Principal
from unlearnkit.service.exact import ExactServedModel

WHO = Principal(name="bench", scopes=frozenset({"admin"}))
ARMS = ("full_copy", "snapshot_copy", "no_snapshot")


def run_arm(arm: str, source: Path, ids: list[int], x: torch.Tensor, args: Any) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="snapq-")) / "model"
    shutil.copytree(source, work)
    every = 10**9 if arm == "no_snapshot" else args.every
    config = ServiceConfig(
        model_dir=work, background_retrain=False, snapshot_every=every, torch_threads=args.threads
    )
    service = DeletionService(config)
    service.start()
    if arm == "full_copy":  # the service's capture before snapshot_copy: a deep copy
        service.model.snapshot_copy = service.model.clone  # type: ignore[method-assign]
    assert isinstance(service.model, ExactServedModel)
    stop = threading.Event()

    def predict() -> None:
        while not stop.is_set():
            service.predict(x)

    clients = [threading.Thread(target=predict) for _ in range(args.clients)]
    for t in clients:
        t.start()
    time.sleep(1.0)
    rows = []
    try:
        for i, sample in enumerate(ids):
            timings: dict[str, float] = {}
            service.submit_deletion(WHO, [sample], f"{arm}-{i}", timings)
            rows.append({"index": i, "queue_ms": 1e3 * timings.get("queue", 0.0)})
    finally:
        stop.set()
        for t in clients:
            t.join()
        service.close()
        shutil.rmtree(work.parent, ignore_errors=True)
    after = [r["queue_ms"] for r in rows if r["index"] % args.every == 0 and r["index"] > 0]
    return {
        "queue": latency_summary([r["queue_ms"] / 1e3 for r in rows]),
        "after_snapshot_ms": [round(v, 2) for v in after] if arm != "no_snapshot" else None,
        "slowest": sorted(rows, key=lambda r: -r["queue_ms"])[:5],
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# The applier's queue phase of a deletion, with and without snapshots",
        "",
        f"{res['ensemble']}; {res['clients']} threads predicting 16 images back to back, "
        f"{res['deletions']} single-id deletions back to back, a snapshot every {res['every']} "
        f"deletions; {res['threads']} torch thread(s); load average {res['load_before']} before, "
        f"{res['load_after']} after.",
        "",
        "| capture | queue p50 ms | p99 ms | max ms | deletions right after a snapshot, queue ms |",
        "|---|---|---|---|---|",
    ]
    for arm in ARMS:
        a = res["arms"][arm]
        q = a["queue"]
        after = (
            "-" if a["after_snapshot_ms"] is None else ", ".join(map(str, a["after_snapshot_ms"]))
        )
        cells = " | ".join(
            "-" if q[k] is None else f"{q[k]:.2f}" for k in ("p50_ms", "p99_ms", "max_ms")
        )
        lines.append(f"| {arm} | {cells} | {after} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ensemble", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--deletions", type=int, default=150)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not (args.ensemble / "CURRENT").exists():
        raise SystemExit(f"error: {args.ensemble} holds no saved ensemble")
    args.threads = apply_threads(args.threads)
    ens = load_ensemble(args.ensemble)
    ids = [int(i) for i in ens.partition.members(0, 0)[: args.deletions]]
    x = ens.data.x[:16].clone()
    load_before = [round(v, 2) for v in os.getloadavg()]
    arms = {arm: run_arm(arm, args.ensemble, ids, x, args) for arm in ARMS}
    res = {
        "ensemble": f"{ens.scheme} {args.ensemble} (m = {ens.config.num_shards})",
        "clients": args.clients,
        "deletions": len(ids),
        "every": args.every,
        "threads": args.threads,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "arms": arms,
    }
    write_report(args.out, "snapshot_queue", res, markdown(res))


if __name__ == "__main__":
    main()
