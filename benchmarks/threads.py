"""CPU threads on a shared machine: the proxy cost and Feldman-Zhang serial vs Ray, idle and
under a synthetic load, with the thread settings a user can choose.

Every measurement is a real ``unlearnkit memorize`` subprocess, so CLI start-up, thread setup
and worker processes are what a user gets. The load is ``--load-procs`` busy-loop processes
started before and stopped after each loaded measurement (bounded: they die with the script).

    python benchmarks/threads.py                 # -> results/threads/{results.json,report.md}
    python benchmarks/threads.py --fz-k 10       # quicker

Cost ratio: one proxy run (its training + scoring seconds) against the Feldman-Zhang estimate
with K models; FZ's cost is linear in K (independent models), so the K=100 figure is the
measured mean per model times 100 and is labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import busy_load

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def memorize(args: list[str], env: dict[str, str] | None = None) -> dict:
    """One ``unlearnkit memorize`` run: wall time and what its score file's sidecar records."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "unlearnkit", "memorize", *args, "--out", str(out)],
            capture_output=True,
            text=True,
            env={**ENV, **(env or {})},
            timeout=1800,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"memorize {args} failed: {proc.stderr[-2000:]}")
        meta = json.loads((out / "scores.csv.json").read_text())
    return {"args": args, "env": env or {}, "wall_s": wall, "meta": meta}


def proxy_cell(threads: int, env: dict[str, str] | None = None) -> dict:
    run = memorize(["--method", "confidence", "--threads", str(threads)], env)
    meta = run["meta"]
    return {
        "threads": threads,
        "env": run["env"],
        "wall_s": round(run["wall_s"], 2),
        "train_s": round(meta["train_seconds"], 3),
        "proxy_s": round(meta["proxy_seconds"], 4),
        "load_at_start": meta["machine"]["load_average_1_5_15"][0],
    }


def fz_cell(executor: str, k: int) -> dict:
    run = memorize(["--method", "fz", "--k", str(k), "--executor", executor, "--chunk-size", "5"])
    meta = run["meta"]
    return {
        "executor": executor,
        "k": k,
        "wall_s": round(run["wall_s"], 2),
        "model_seconds": round(meta["model_seconds"], 2),
        "load_at_start": meta["machine"]["load_average_1_5_15"][0],
    }


def measure(condition: str, fz_k: int) -> dict:
    cells = {
        "proxy_threads_1": proxy_cell(1),
        # OpenMP's own default wait policy (the CLI sets PASSIVE only when the variable is unset)
        "proxy_threads_2": proxy_cell(2, {"OMP_WAIT_POLICY": ""}),
        "proxy_threads_2_passive": proxy_cell(2, {"OMP_WAIT_POLICY": "PASSIVE"}),
        "fz_serial": fz_cell("local", fz_k),
        "fz_ray": fz_cell("ray", fz_k),
    }
    fz = cells["fz_serial"]
    per_model = fz["model_seconds"] / fz_k
    for key in ("proxy_threads_1", "proxy_threads_2"):
        cost = cells[key]["train_s"] + cells[key]["proxy_s"]
        cells[key]["share_of_fz_k100_pct"] = round(100 * cost / (per_model * 100), 4)
    cells["fz_ray_speedup_wall"] = round(fz["wall_s"] / cells["fz_ray"]["wall_s"], 3)
    cells["condition"] = condition
    return cells


def report(results: dict) -> str:
    lines = [
        "# CPU threads: proxy cost and FZ serial vs Ray, idle and under load",
        "",
        f"Machine: {results['cpu_count']} CPUs, {results['cores_available']} available to the "
        f"process; load = {results['load_procs']} busy-loop processes. Times are wall seconds of "
        "a whole `unlearnkit memorize` command (CLI start-up included) unless named otherwise.",
        "",
        "| condition | proxy 1 thread (train s / wall s) | proxy 2 threads, OpenMP default wait "
        "| proxy 2 threads, OMP_WAIT_POLICY=PASSIVE (the CLI default) | FZ serial wall s "
        "| FZ Ray wall s | Ray speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["conditions"]:
        p1, p2, pp = c["proxy_threads_1"], c["proxy_threads_2"], c["proxy_threads_2_passive"]
        loads = [v["load_at_start"] for v in c.values() if isinstance(v, dict)]
        lines.append(
            f"| {c['condition']} (load {min(loads):.1f}-{max(loads):.1f}) | {p1['train_s']:.2f} / "
            f"{p1['wall_s']:.1f} | {p2['train_s']:.2f} / {p2['wall_s']:.1f} | "
            f"{pp['train_s']:.2f} / {pp['wall_s']:.1f} | {c['fz_serial']['wall_s']:.1f} | "
            f"{c['fz_ray']['wall_s']:.1f} | x{c['fz_ray_speedup_wall']:.2f} |"
        )
    lines += [
        "",
        f"Proxy cost as a share of Feldman-Zhang with K=100 (K=100 = the measured mean per model "
        f"of K={results['fz_k']} times 100):",
        "",
    ]
    for c in results["conditions"]:
        lines.append(
            f"- {c['condition']}: 1 thread {c['proxy_threads_1']['share_of_fz_k100_pct']:.3f}%, "
            f"2 threads {c['proxy_threads_2']['share_of_fz_k100_pct']:.3f}%"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fz-k", type=int, default=20, help="FZ models per timing")
    ap.add_argument("--load-procs", type=int, default=2, help="busy-loop processes for the load")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "threads")
    ap.add_argument("--report-only", action="store_true", help="rewrite report.md from results")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        (args.out / "report.md").write_text(report(results))
        print(report(results))
        return
    results = {
        "cpu_count": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "load_procs": args.load_procs,
        "fz_k": args.fz_k,
        "load_average_before": os.getloadavg()[0],
        "conditions": [],
    }
    results["conditions"].append(measure("idle", args.fz_k))
    print(json.dumps(results["conditions"][-1], indent=1), flush=True)
    with busy_load(args.load_procs, seconds=3600):
        results["conditions"].append(measure("loaded", args.fz_k))
    print(json.dumps(results["conditions"][-1], indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "report.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
