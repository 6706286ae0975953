"""Where the time of one Fast-NTK deletion goes: the Jacobians of the deleted samples vs the
downdate of the P x P state, each next to its FLOP floor measured at its own shapes, dtype and
threads (a floor that the measurement beats is flagged INVALID FLOOR in the report).

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

import torch

sys.path.insert(0, str(Path(__file__).parent))
from fast_ntk import dataset_bn_setup  # the largest-N run's set-up: D, random init, BN + head

from unlearnkit.metrics.flop_floor import (
    FlopFloor,
    GemmShape,
    gemm_assumptions,
    gemm_rate,
    replay_assumptions,
    replayed_rate,
)
from unlearnkit.ntk import precompute_state
from unlearnkit.ntk.incremental import forget_rows
from unlearnkit.runtime import apply_threads, thread_report


def downdate_shapes(rows: int, p: int) -> tuple[list[GemmShape], str]:
    """The GEMMs of ``NTKState.downdate`` for ``rows`` = kC Jacobian rows, and what the floor
    leaves out. Woodbury (rows < P): U H, H's update and A's update (each rows x P x P) and
    U H U^T (rows x P x rows). Refactor (rows >= P): A's update only."""
    if rows >= p:
        return [GemmShape(p, rows, p)], "refactor path: the P^3 Cholesky and inverse not counted"
    return (
        [GemmShape(rows, p, p), GemmShape(p, rows, p, count=2), GemmShape(rows, p, rows)],
        "Woodbury path: the rows x rows Cholesky and solve not counted",
    )


def measure(arch: str, n_state: int, ks: list[int], threads: int, lam: float = 0.1) -> dict:
    """Per k: the Jacobians and the downdate timed, then each one's floor measured at its own
    shapes, dtype and threads (``unlearnkit.metrics.flop_floor``), and checked against it."""
    bundle, model, names, _space, p, total, w0 = dataset_bn_setup("fashion_mnist", arch, n_state)
    num_classes = bundle.num_classes
    t = time.perf_counter()
    state = precompute_state(model, names, w0, bundle.train, num_classes, lam=lam)
    state_s = time.perf_counter() - t
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
        # the floors, after the timed work: the Jacobians' own ops replayed, the downdate's GEMMs
        jac_rate = replayed_rate(lambda s=samples: forget_rows(model, state, w0, s), threads)
        jac_floor = FlopFloor("Jacobians", jac_rate.flops, jac_rate,
                              replay_assumptions(jac_rate, "Jacobians"))  # fmt: skip
        shapes, left_out = downdate_shapes(int(u.shape[0]), p)
        down_rate = gemm_rate(shapes, state.gram.dtype, threads)
        assumed = gemm_assumptions(down_rate, "downdate") + f"; {left_out}"
        down_floor = FlopFloor("downdate", down_rate.flops, down_rate, assumed)
        jac_check, down_check = jac_floor.check(jac_s), down_floor.check(down_s)
        rows.append({
            "k": k, "rows": int(u.shape[0]), "jacobian_s": jac_s, "downdate_s": down_s,
            "jacobian_floor": jac_floor.as_dict(), "jacobian_check": jac_check.as_dict(),
            "downdate_floor": down_floor.as_dict(), "downdate_check": down_check.as_dict(),
        })  # fmt: skip
        print(f"{arch} k={k}: jacobians {jac_s:.2f} s ({jac_check.verdict}), downdate "
              f"{down_s:.2f} s ({down_rate.flops / 1e9:.1f} GFLOP, {down_check.verdict})",
              flush=True)  # fmt: skip
    return {"model": arch, "P": p, "total_params": total, "state_samples": n_state,
            "state_s": state_s, "rows": rows}  # fmt: skip


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
    runs = [measure(arch, args.state_samples, ks, threads) for arch in args.models.split(",")]
    lines = [
        f"# One Fast-NTK deletion, split (fashion_mnist D, random init, {threads} threads, load "
        f"{machine['load_average_1_5_15'][0]:.2f})",
        "",
        "Floors are measured where the work runs (`unlearnkit.metrics.flop_floor`): each "
        "part's FLOPs at the rate of its own ops, shapes, dtype and threads, timed alone after "
        "the measurement. A time below its floor is flagged INVALID FLOOR, not read as a win.",
        "",
        "| model | P | k | rows | Jacobians s | floor s | check | downdate s | floor s | check |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["rows"]:
            jc, dc = row["jacobian_check"], row["downdate_check"]
            lines.append(
                f"| {run['model']} | {run['P']:,} | {row['k']} | {row['rows']:,} | "
                f"{row['jacobian_s']:.3g} | {jc['floor_s']:.3g} | {jc['verdict']} | "
                f"{row['downdate_s']:.3g} | {dc['floor_s']:.3g} | {dc['verdict']} |"
            )
    lines += ["", "Assumptions of each floor:", ""]
    for run in runs:
        for row in run["rows"]:
            for part in ("jacobian_floor", "downdate_floor"):
                f = row[part]
                lines.append(
                    f"- {run['model']} k={row['k']}: {f['assumptions']} "
                    f"({f['rate']['flops_per_s'] / 1e9:.1f} GFLOP/s)"
                )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"threads": threads, "machine": machine, "runs": runs}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
