"""Where the time of one Fast-NTK deletion goes: the Jacobians of the deleted samples vs the
downdate of the P x P state, each next to its FLOP floor on this machine.

A deletion of k samples computes k C Jacobian rows (C reverse passes per chunk) and then the
Woodbury downdate, about 3 GEMMs of kC x P x P in float64 (u H, the inverse update and the Gram
update) plus one kC x kC x P. Neither cost depends on N: the state is P x P whatever the data
set's size, so a state of a few thousand samples times the same deletion as one of 42,000.
Models at random init, real Fashion-MNIST images of D (timing only).

    python benchmarks/ntk_deletion_cost.py --threads 2 --out results/fashion_mnist/ntk_deletion_cost
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from fast_ntk import dataset_bn_setup  # the largest-N run's set-up: D, random init, BN + head

from unlearnkit.ntk import gemm_flops_per_s, precompute_cost, precompute_state
from unlearnkit.ntk.incremental import forget_rows
from unlearnkit.runtime import apply_threads, thread_report


def downdate_flops(rows: int, p: int) -> float:
    """GEMM FLOPs of ``NTKState.downdate`` for ``rows`` = kC Jacobian rows (Woodbury form)."""
    return 3 * 2.0 * rows * p * p + 2.0 * rows * rows * p


def measure(arch: str, n_state: int, ks: list[int], lam: float = 0.1) -> dict[str, Any]:
    bundle, model, names, _space, p, total, w0 = dataset_bn_setup("fashion_mnist", arch, n_state)
    num_classes = bundle.num_classes
    t = time.perf_counter()
    state = precompute_state(model, names, w0, bundle.train, num_classes, lam=lam)
    state_s = time.perf_counter() - t
    rate32 = gemm_flops_per_s()
    rate64 = gemm_flops_per_s(dtype=torch.float64)
    per_sample_model = precompute_cost(model, names, bundle.train.x[:4], num_classes, w0,
                                       gemm_rate=rate32).model_flops  # fmt: skip
    rows, next_id = [], 0
    for k in ks:
        ids = torch.arange(next_id, next_id + k)
        next_id += k
        samples = bundle.train.select_ids(ids)
        t = time.perf_counter()
        u, r = forget_rows(model, state, w0, samples)
        jac_s = time.perf_counter() - t
        t = time.perf_counter()
        state.downdate(samples.ids, u, r)
        down_s = time.perf_counter() - t
        flops = downdate_flops(u.shape[0], p)
        rows.append({
            "k": k, "rows": int(u.shape[0]), "jacobian_s": jac_s, "downdate_s": down_s,
            "jacobian_floor_s": k * per_sample_model / rate32,
            "downdate_gflop": flops / 1e9, "downdate_floor_s": flops / rate64,
        })  # fmt: skip
        print(f"{arch} k={k}: jacobians {jac_s:.2f} s, downdate {down_s:.2f} s "
              f"({flops / 1e9:.0f} GFLOP, floor {flops / rate64:.2f} s)", flush=True)  # fmt: skip
    return {"model": arch, "P": p, "total_params": total, "state_samples": n_state,
            "state_s": state_s, "gemm_flops_per_s_float32": rate32,
            "gemm_flops_per_s_float64": rate64, "model_flops_per_sample": per_sample_model,
            "rows": rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smallcnn,resnet18")
    ap.add_argument("--state-samples", type=int, default=1024)
    ap.add_argument("--ks", default="1,10,100")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("results/fashion_mnist/ntk_deletion_cost"))
    args = ap.parse_args()
    threads = apply_threads(args.threads)
    machine = thread_report()
    ks = [int(k) for k in args.ks.split(",")]
    runs = [measure(arch, args.state_samples, ks) for arch in args.models.split(",")]
    lines = [
        f"# One Fast-NTK deletion, split (fashion_mnist D, random init, {threads} threads, load "
        f"{machine['load_average_1_5_15'][0]:.2f})",
        "",
        "Floors: the model's FLOPs per sample (torch.utils.flop_counter) at the float32 GEMM "
        "rate for the Jacobians; the downdate's GEMM FLOPs at the float64 rate.",
        "",
        "| model | P | k | rows | Jacobians s (floor) | downdate s (floor) | downdate share |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["rows"]:
            total = row["jacobian_s"] + row["downdate_s"]
            lines.append(
                f"| {run['model']} | {run['P']:,} | {row['k']} | {row['rows']:,} | "
                f"{row['jacobian_s']:.2f} ({row['jacobian_floor_s']:.2f}) | "
                f"{row['downdate_s']:.2f} ({row['downdate_floor_s']:.2f}) | "
                f"{100 * row['downdate_s'] / total:.0f}% |"
            )
    lines += ["", "GEMM rates: " + ", ".join(
        f"{r['model']} run float32 {r['gemm_flops_per_s_float32'] / 1e9:.0f} / float64 "
        f"{r['gemm_flops_per_s_float64'] / 1e9:.0f} GFLOP/s" for r in runs)]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"threads": threads, "machine": machine, "runs": runs}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
