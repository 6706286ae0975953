"""The Python API and the CLI run the same demo in about the same time, on a loaded machine.

Issue 28 found the API 5.8x slower than the CLI beside other work: the CLI set a thread policy
the library did not. Now ``import unlearnkit`` applies it. This runs the demo both ways as a
user would, each in a fresh subprocess (``unlearnkit demo`` and a three-line script calling
``run_experiment``, no thread settings of its own), alternating, with ``--load-procs`` busy-loop
processes beside them, and reports the ratio of the medians. Target: within 20%.

    python benchmarks/api_vs_cli.py                    # -> results/threads/api_vs_cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import busy_load, machine

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
API = (
    "import sys\n"
    "from unlearnkit.config import build_config\n"
    "from unlearnkit.experiment import run_experiment\n"
    "from unlearnkit.report import write_run\n"
    "methods = sys.argv[2].split(',') if len(sys.argv) > 2 else None\n"
    "write_run(run_experiment(build_config(methods=methods)), sys.argv[1])\n"
)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="runs of each, alternating")
    ap.add_argument("--load-procs", type=int, default=2, help="busy-loop processes beside them")
    ap.add_argument("--methods", default=None, help="comma-separated (default: the demo's)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "threads" / "api_vs_cli.json")
    args = ap.parse_args()

    header = machine()
    cli_s: list[float] = []
    api_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, busy_load(args.load_procs, seconds=7200):
        for rep in range(args.reps):
            out = Path(tmp) / f"demo{rep}"
            chosen = ["--methods", args.methods] if args.methods else []
            cli_s.append(
                timed([sys.executable, "-m", "unlearnkit", "demo", *chosen, "--out", str(out)])
            )
            api_out = str(Path(tmp) / f"api{rep}")
            api_s.append(timed([sys.executable, "-c", API, api_out, *chosen[1:]]))
            print(f"rep {rep}: CLI {cli_s[-1]:.1f} s, API {api_s[-1]:.1f} s", flush=True)
    ratio = statistics.median(api_s) / statistics.median(cli_s)
    results = {
        "machine_before": header,
        "load_procs": args.load_procs,
        "methods": args.methods or "the demo's default",
        "cli_seconds": cli_s,
        "api_seconds": api_s,
        "api_over_cli_median": ratio,
        "target": "API within 20% of the CLI (0.8 <= ratio <= 1.2)",
        "met": 0.8 <= ratio <= 1.2,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"API / CLI median wall time: {ratio:.2f} ({'met' if results['met'] else 'missed'})")


if __name__ == "__main__":
    main()
