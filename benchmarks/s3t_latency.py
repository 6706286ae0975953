"""Serving latency of a saved S3T/SISA ensemble (issue 26's targets): 16 test images.

Measured side by side in one run, on the ensemble a user serves (``unlearnkit s3t train --out``
or ``benchmarks/s3t_scale.py --save``), its test images read through its own data reference:
  - in process: the packed pass (``predict_logits``, the default) and the per-shard loop
    (``packed=False``, the reference), alternating, p50 / p99 over ``--reps`` after a warm-up;
  - the FLOP floor of what must be computed: the packed pass's FLOPs (the trunk once plus
    every served shard's adapted part; ``torch.utils.flop_counter``) at the rate those same ops
    run at their own shapes (``metrics.flop_floor.counted_floor``), and p50 / floor;
  - over HTTP with one client: a real ``unlearnkit serve`` child on a copy of the ensemble
    (benchmarks/service.py's helpers), 16-image predictions back to back, p50 / p99 with n.
Targets (met / missed): in-process p50 <= 50 ms, HTTP p50 <= 60 ms, p50 <= 1.5 x the floor.
Threads, the load average before and after, torch and the device are recorded: on a shared or
loaded machine the figures mean little.

    PYTHONPATH=src python benchmarks/s3t_latency.py --ensemble runs/fashion-preset \\
        --out results/fashion_mnist/latency
    PYTHONPATH=src python benchmarks/s3t_latency.py --ensemble /tmp/ens --reps 5 \\
        --http-requests 5 --out /tmp/latency   # a check (no meaningful timing)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _harness import write_report
from service import TOKEN, free_port, start_server, stop_server

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.packed import Packer
from unlearnkit.exact.recipe import ensemble_data
from unlearnkit.metrics.flop_floor import counted_floor
from unlearnkit.metrics.latency import alternating_latency, latency_summary
from unlearnkit.runtime import apply_threads, thread_report
from unlearnkit.runtime.device import current_runtime
from unlearnkit.service import ServiceConfig
from unlearnkit.service.record import read_state

TARGETS_MS = {"in_process_p50": 50.0, "http_p50": 60.0}
FLOOR_MULTIPLE = 1.5


def load(directory: Path) -> tuple[Any, torch.Tensor, str]:
    """The ensemble as the CLI reads it (snapshot + ledger), its test inputs, its data set."""
    ens = read_state(directory).model.ensemble
    bundle = ensemble_data(ens.meta)
    return ens, bundle.test.x, str(ens.meta.get("dataset"))


def describe(ens: Any, directory: Path, dataset: str) -> dict[str, Any]:
    c = ens.config
    return {
        "directory": str(directory),
        "dataset": dataset,
        "scheme": ens.scheme,
        "model": c.model,
        "shards": c.num_shards,
        "slices": c.num_slices,
        "sequences": len(ens.sequences),
        "lora_rank": c.lora_rank,
        "adapt": c.adapt,
        "served_shards": len(ens.serving_plan()),
        "version": ens.version,
    }


def in_process(ens: Any, x: torch.Tensor, reps: int, warmup: int) -> dict[str, Any]:
    """The packed pass (the default), the same pass under ``vmap`` alone (no channel
    stacking) and the per-shard loop, alternating; and how far their logits differ."""
    sync = torch.cuda.synchronize if current_runtime().device.type == "cuda" else None
    vmap_view = Packer(ens.stack, ens.spec, ens.backbone_state, channel_stacked=False).view(
        ens.serving_plan(), ens.packed_view().aggregation
    )
    out: dict[str, Any] = alternating_latency(
        {
            "packed": lambda: ens.predict_logits(x),
            "packed_vmap": lambda: vmap_view.logits(x),
            "loop": lambda: ens.predict_logits(x, packed=False),
        },
        reps,
        warmup,
        sync,
    )
    diff = (ens.predict_logits(x) - ens.predict_logits(x, packed=False)).abs().max()
    out["max_abs_logit_diff"] = float(diff)
    return out


def floor(ens: Any, x: torch.Tensor, threads: int, p50_ms: float) -> dict[str, Any]:
    what = f"one packed prediction of {len(x)} images (trunk once + every served shard)"
    f = counted_floor(lambda: ens.predict_logits(x), what, threads)
    check = f.check(p50_ms / 1000.0)
    rate = f.rate.as_dict()
    rate.pop("parts")  # per-op detail: long, and in the replay's own terms
    return {
        "flops": f.flops,
        "floor_ms": 1000.0 * f.seconds,
        "rate_gflop_per_s": rate["flops_per_s"] / 1e9,
        "distinct_ops": len(f.rate.parts),
        "assumptions": f.assumptions,
        "p50_over_floor": check.multiple,
        "verdict": check.verdict,
        "valid": check.valid,
        "rate": rate,
    }


def over_http(ens: Any, x: torch.Tensor, requests: int, warmup: int, threads: int,
              work: Path) -> dict[str, Any]:  # fmt: skip
    """One client, predictions back to back, against a real server on a copy of the ensemble
    (the server writes its ledger into the directory it serves)."""
    ens.save(work / "model")
    port = free_port()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"inputs": x.tolist()}
    times = []
    with (work / "server.log").open("wb") as log:
        proc = start_server(work / "model", port, log, background_retrain=False, threads=threads)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                for i in range(warmup + requests):
                    start = time.perf_counter()
                    r = client.post("/v1/predict", json=body, headers=headers)
                    took = time.perf_counter() - start
                    if r.status_code != 200:
                        raise SystemExit(f"error: the server answered {r.status_code}: {r.text}")
                    if i >= warmup:
                        times.append(took)
        finally:
            stop_server(proc)
    return {
        **latency_summary(times),
        "clients": 1,
        "server_threads": threads,
        "batch_window_ms": ServiceConfig.model_fields["batch_window_ms"].default,
        "server": "unlearnkit serve, packed pass (its default), default micro-batching window",
    }


def target(value: float | None, limit: float, what: str) -> dict[str, Any]:
    met = None if value is None else bool(value <= limit)
    return {"what": what, "value": value, "limit": limit, "met": met}


def targets(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    p50 = res["in_process"]["packed"]["p50_ms"]
    http = res.get("http", {}).get("p50_ms")
    return {
        "in_process_p50": target(p50, TARGETS_MS["in_process_p50"], "in-process p50 ms"),
        "http_p50": target(http, TARGETS_MS["http_p50"], "HTTP p50 ms, one client"),
        "within_floor": target(
            res["floor"]["p50_over_floor"], FLOOR_MULTIPLE, "in-process p50 / FLOP floor"
        ),
    }


def cell(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(res: dict[str, Any]) -> str:
    e, m = res["ensemble"], res["machine"]
    lines = [
        f"# Serving latency: {e['scheme']} on {e['dataset']}, {res['batch']} images",
        "",
        f"{e['model']}, m = {e['shards']} ({e['served_shards']} served), L = {e['slices']}, "
        f"B = {e['sequences']}, LoRA r = {e['lora_rank']}, adapt {e['adapt'] or 'all'}; "
        f"{m['threads']} thread(s) on {m['device']}, torch {m['torch']}, load average "
        f"{m['load_before']} before, {m['load_after']} after.",
        "",
        "| path | n | p50 ms | p99 ms | mean ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("packed (in process)", res["in_process"]["packed"])]
    if "packed_vmap" in res["in_process"]:
        rows.append(
            ("packed under vmap only, no channel stacking", res["in_process"]["packed_vmap"])
        )
    rows.append(("per-shard loop (in process)", res["in_process"]["loop"]))
    if "p50_ms" in res.get("http", {}):
        rows.append(("HTTP, one client", res["http"]))
    for name, s in rows:
        lines.append(f"| {name} | {s['n']} | {cell(s['p50_ms'])} | {cell(s['p99_ms'])} | "
                     f"{cell(s['mean_ms'])} | {cell(s['max_ms'])} |")  # fmt: skip
    f = res["floor"]
    lines += [
        "",
        f"FLOP floor: {f['flops'] / 1e6:.1f} MFLOP at {f['rate_gflop_per_s']:.1f} GFLOP/s = "
        f"{f['floor_ms']:.2f} ms; packed p50 is {f['verdict']}. ({f['assumptions']}.) "
        f"Packed vs loop logits: max |diff| {res['in_process']['max_abs_logit_diff']:.2e}.",
        "",
        "## Targets",
        "",
    ]
    for t in res["targets"].values():
        verdict = "not measured" if t["met"] is None else "met" if t["met"] else "MISSED"
        lines.append(f"- {t['what']} <= {t['limit']}: {cell(t['value'])} -> {verdict}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ensemble", type=Path, required=True, help="a saved S3T/SISA ensemble")
    ap.add_argument("--batch", type=int, default=16, help="test images per prediction")
    ap.add_argument("--reps", type=int, default=200, help="timed rounds in process")
    ap.add_argument("--warmup", type=int, default=20, help="untimed rounds / requests first")
    ap.add_argument("--http-requests", type=int, default=200, help="0: no HTTP part")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (server too)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if min(args.batch, args.reps) < 1 or min(args.warmup, args.http_requests) < 0:
        print("error: --batch and --reps must be >= 1, --warmup and --http-requests >= 0",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    load_before = list(os.getloadavg())
    try:
        ens, test_x, dataset = load(args.ensemble)
    except UnlearnkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    threads = apply_threads(args.threads)
    x = test_x[: args.batch]
    res: dict[str, Any] = {"ensemble": describe(ens, args.ensemble, dataset), "batch": len(x)}
    res["in_process"] = {**in_process(ens, x, args.reps, args.warmup), "reps": args.reps,
                         "warmup": args.warmup}  # fmt: skip
    res["floor"] = floor(ens, x, threads, res["in_process"]["packed"]["p50_ms"])
    if args.http_requests:
        work = Path(tempfile.mkdtemp(prefix="unlearnkit-latency-"))
        try:
            res["http"] = over_http(ens, x, args.http_requests, args.warmup, threads, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    res["targets"] = targets(res)
    res["machine"] = {
        "threads": threads,
        "device": str(current_runtime().device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        **thread_report(),
    }
    write_report(args.out, "latency", res, markdown(res))


if __name__ == "__main__":
    main()
