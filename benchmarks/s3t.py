"""S3T vs SISA on digits, side by side in one run; writes results/s3t/ (JSON, report.md, PNG).

1. Accuracy after training: S3T (B = 1, 2, L) vs SISA vs one non-sharded model with the same
   PEFT (LoRA on every conv + head) and the same total epochs (L stages x E = L*E epochs).
2. Streams of uniformly random deletions (the same streams for every scheme): test accuracy,
   retrains and retrain seconds after each deletion. S3T and SISA with the same policy
   (``dead_shard``: retrain a shard only once it serves nothing) and classic SISA (``eager``:
   retrain the shard from checkpoint p-1 at every deletion).
3. Deletion latency p50/p99 in process (deactivation only, and deletions that retrained).
4. Deletion capacity: Monte Carlo simulation vs closed forms over a grid of (m, L, B), the
   S3T/SISA ratio, and prior-aware (matching) vs cyclic sequences under a skewed prior.
Also checks exactness at benchmark scale: after the stream and a retrain of every pending
shard, S3T's logits equal those of S3T trained from scratch on D minus the deleted samples.

Usage: python benchmarks/s3t.py [--shards 5 --slices 3 --epochs 5 --deletions 60 --streams 3]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.exact import (
    EnsembleRecipe,
    S3TConfig,
    S3TEnsemble,
    SISAConfig,
    build_ensemble,
)
from unlearnkit.exact.capacity import s3t_capacity, simulate_capacity, sisa_capacity
from unlearnkit.exact.recipe import load_data, make_backbone, stack_spec
from unlearnkit.exact.sequences import cyclic_sequences, select_sequences
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.runtime import apply_threads
from unlearnkit.training import TrainConfig

# digits, smallcnn pretrained on the public 30% (20 epochs), frozen: the CLI's default recipe
RECIPE = EnsembleRecipe(dataset="digits", public_fraction=0.3)


def build(args: argparse.Namespace, bundle: Any, backbone: dict) -> dict[str, Any]:
    """Train every scheme once on one backbone; returns name -> ensemble (plus the single
    model)."""
    recipe = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=32)
    common = dict(num_shards=args.shards, num_slices=args.slices, lora_rank=args.rank,
                  train=recipe, seed=0)  # fmt: skip
    configs: dict[str, Any] = {}
    for b in sorted({1, 2, args.slices}):
        configs[f"S3T B={b}"] = S3TConfig(num_sequences=b, retrain_policy="dead_shard", **common)
    configs["SISA (dead_shard)"] = SISAConfig(retrain_policy="dead_shard", **common)
    configs["SISA (eager)"] = SISAConfig(retrain_policy="eager", **common)
    configs["single model"] = SISAConfig(
        num_shards=1, num_slices=1, lora_rank=args.rank, seed=0,
        train=recipe.model_copy(update={"epochs": args.epochs * args.slices}),
    )  # fmt: skip
    out = {}
    for name, cfg in configs.items():
        if name == "SISA (eager)":  # same weights as SISA (dead_shard); only the policy differs
            ens = out["SISA (dead_shard)"].clone()
            ens.config = cfg
        else:
            ens = build_ensemble(RECIPE, cfg, bundle=bundle, backbone=backbone)
        out[name] = ens
        print(f"trained {name}: {ens.train_seconds:.1f} s, test {ens.accuracy(bundle.test):.2f}%",
              flush=True)  # fmt: skip
    return out


def stream(ens: Any, ids: list[int], test: Any) -> dict[str, Any]:
    """Delete ``ids`` one by one; record accuracy, retrains and per-deletion latency."""
    acc = [ens.accuracy(test)]
    retrains, retrain_s, latency, latency_retrain, live = [0], [0.0], [], [], []
    for i in ids:
        before = ens.retrains_done
        start = time.perf_counter()
        ens.delete([i])
        took = time.perf_counter() - start
        (latency if ens.retrains_done == before else latency_retrain).append(took)
        acc.append(ens.accuracy(test))
        retrains.append(ens.retrains_done)
        retrain_s.append(ens.retrain_seconds)
        live.append(len(ens.serving_plan()))
    return {
        "acc": acc,
        "retrains": retrains,
        "retrain_seconds": retrain_s,
        "latency_s": latency,
        "latency_retrain_s": latency_retrain,
        "live_shards": live,
    }


def capacity_grid(trials: int) -> dict[str, Any]:
    rows = []
    for m in (2, 5, 10):
        for L in (2, 4, 8):
            for B in sorted(b for b in {1, 2, 4, L} if b <= math.factorial(L)):
                seqs = cyclic_sequences(L, B)
                sim = simulate_capacity(m, L, seqs, trials=trials, seed=m * 100 + L * 10 + B)
                theory = s3t_capacity(m, L, B)
                rows.append({"m": m, "L": L, "B": B, "theory": theory, "simulated": sim.mean,
                             "stderr": sim.stderr, "rel_error": sim.mean / theory - 1,
                             "ratio_vs_sisa": theory / sisa_capacity(m, L)})  # fmt: skip
    prior = [0.55, 0.25, 0.1, 0.1]
    # B = 2 < L: which slices come first matters (with B = L every slice is first once)
    matched = simulate_capacity(5, 4, select_sequences(4, 2, prior), prior=prior, trials=trials)
    cyclic = simulate_capacity(5, 4, cyclic_sequences(4, 2), prior=prior, trials=trials)
    sisa = simulate_capacity(5, 4, 1, prior=prior, trials=trials)
    return {
        "grid": rows,
        "max_abs_rel_error": max(abs(r["rel_error"]) for r in rows),
        "prior": {"prior": prior, "matched_B2": matched.mean, "cyclic_B2": cyclic.mean,
                  "sisa": sisa.mean, "matched_sequences": select_sequences(4, 2, prior)},
        "m5_L4_B4": {"s3t": s3t_capacity(5, 4, 4), "sisa": sisa_capacity(5, 4),
                     "ratio": s3t_capacity(5, 4, 4) / sisa_capacity(5, 4)},
    }  # fmt: skip


def exactness_check(ens: S3TEnsemble, bundle: Any, backbone: dict) -> dict[str, Any]:
    """Retrain every pending shard, then compare with S3T trained on D minus the deletions."""
    for shard in ens.status(simulate=False)["retrains_pending"]:
        ens.retrain_shard(shard)
    deleted = sorted(ens.partition.deleted)
    ref = S3TEnsemble.train(bundle.train.drop_ids(deleted), ens.config,
                            num_classes=bundle.num_classes, backbone_state=backbone)  # fmt: skip
    a, b = ens.predict_logits(bundle.test.x), ref.predict_logits(bundle.test.x)
    return {"deleted": len(deleted), "bit_identical": bool(torch.equal(a, b)),
            "max_abs_diff": float((a - b).abs().max())}  # fmt: skip


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) * 1000 if values else None


def summarise(curves: dict[str, list[dict]], checkpoints: list[int]) -> dict[str, Any]:
    out = {}
    for name, runs in curves.items():
        acc = np.array([r["acc"] for r in runs])
        lat = [x for r in runs for x in r["latency_s"]]
        lat_r = [x for r in runs for x in r["latency_retrain_s"]]
        out[name] = {
            "acc_mean": acc.mean(0).tolist(),
            "acc_at": {str(k): float(acc[:, k].mean()) for k in checkpoints},
            "acc_stream_mean": float(acc.mean()),
            "retrains_final_mean": float(np.mean([r["retrains"][-1] for r in runs])),
            "retrain_seconds_final_mean": float(np.mean([r["retrain_seconds"][-1] for r in runs])),
            "retrains_mean": np.mean([r["retrains"] for r in runs], 0).tolist(),
            "latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "n": len(lat)},
            "latency_with_retrain_ms": {"p50": pct(lat_r, 50), "p99": pct(lat_r, 99),
                                        "n": len(lat_r)},
        }  # fmt: skip
    return out


def figure(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in summary.items():
        ax1.plot(s["acc_mean"], label=name)
        ax2.plot(s["retrains_mean"], label=name)
    ax1.set(xlabel="deletions", ylabel="test accuracy (%)", title="accuracy under deletions")
    ax2.set(xlabel="deletions", ylabel="shard retrains (cumulative)", title="retrains")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(res: dict[str, Any]) -> str:
    a = res["args"]
    k = str(a["check_at"])
    lines = [
        "# S3T vs SISA on digits",
        "",
        f"smallcnn backbone pretrained on the public 30% ({res['data']['public']} samples), "
        f"frozen; D = {res['data']['train']} samples, test {res['data']['test']}. "
        f"m = {a['shards']} shards, L = {a['slices']} slices, LoRA r = {a['rank']}, "
        f"{a['epochs']} epochs per stage (lr {a['lr']}); {a['streams']} streams of "
        f"{a['deletions']} uniform random deletions. 1 CPU thread. Total {res['seconds']:.0f} s.",
        "",
        "## Accuracy and training cost",
        "",
        f"| scheme | train s | test % at 0 | at {k} | at {a['deletions']} | mean over stream | "
        "retrains | retrain s | delete p50 ms | p99 ms | delete+retrain p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["streams"].items():
        lat, lat_r = s["latency_ms"], s["latency_with_retrain_ms"]

        def f(v: float | None, d: int = 2) -> str:
            return "-" if v is None else f"{v:.{d}f}"

        lines.append(
            f"| {name} | {res['train_seconds'][name]:.1f} | {s['acc_at']['0']:.2f} | "
            f"{s['acc_at'][k]:.2f} | {s['acc_at'][str(a['deletions'])]:.2f} | "
            f"{s['acc_stream_mean']:.2f} | "
            f"{s['retrains_final_mean']:.1f} | {s['retrain_seconds_final_mean']:.1f} | "
            f"{f(lat['p50'], 3)} | {f(lat['p99'], 3)} | {f(lat_r['p50'], 0)} |"
        )
    lines.append(
        f"| single model (m=1, L=1, {a['epochs'] * a['slices']} epochs) | "
        f"{res['train_seconds']['single model']:.1f} | {res['single_model_acc']:.2f} | - | - "
        "| - | - | - | - | - | - |"
    )
    cap = res["capacity"]
    t = res["targets"]
    lines += [
        "",
        "![accuracy and retrains](s3t_deletions.png)",
        "",
        "## Deletion capacity (expected uniform deletions before every shard is dead)",
        "",
        f"Simulation ({res['args']['trials']} streams per cell) vs closed form over "
        f"{len(cap['grid'])} (m, L, B) cells: largest relative error "
        f"{100 * cap['max_abs_rel_error']:.2f}%.",
        "",
        "| m | L | B | theory | simulated | rel. error % | S3T/SISA |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in cap["grid"]:
        lines.append(
            f"| {r['m']} | {r['L']} | {r['B']} | {r['theory']:.1f} | {r['simulated']:.1f} | "
            f"{100 * r['rel_error']:+.2f} | {r['ratio_vs_sisa']:.2f} |"
        )
    p = cap["prior"]
    lines += [
        "",
        f"Skewed prior {p['prior']} (m=5, L=4, B=2): matching sequences "
        f"{p['matched_sequences']} last {p['matched_B2']:.1f} deletions, cyclic "
        f"{p['cyclic_B2']:.1f}, SISA {p['sisa']:.1f}.",
        "",
        "## Exactness at benchmark scale",
        "",
        f"After {res['exactness']['deleted']} deletions and retraining every pending shard, "
        f"S3T B={a['slices']} logits vs S3T trained from scratch on D minus those samples: "
        f"bit-identical = {res['exactness']['bit_identical']} "
        f"(max |diff| {res['exactness']['max_abs_diff']}).",
        "",
        "## Targets",
        "",
    ]
    lines += [f"- {name}: {'met' if ok else 'NOT met'} ({why})" for name, (ok, why) in t.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--deletions", type=int, default=60)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--check-at", type=int, default=30)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("results/s3t"))
    args = parser.parse_args()
    apply_threads(1)
    start = time.perf_counter()
    bundle = load_data(RECIPE)
    backbone = make_backbone(RECIPE, stack_spec(S3TConfig(), bundle), bundle, seed=0)
    models = build(args, bundle, backbone)
    single = models.pop("single model")
    curves: dict[str, list[dict]] = {name: [] for name in models}
    ids = bundle.train.ids.tolist()
    for s in range(args.streams):
        order = np.random.default_rng(1000 + s).permutation(ids)[: args.deletions].tolist()
        for name, ens in models.items():
            curves[name].append(stream(ens.clone(), order, bundle.test))
            print(f"stream {s} {name}: acc {curves[name][-1]['acc'][-1]:.2f}%, "
                  f"retrains {curves[name][-1]['retrains'][-1]}", flush=True)  # fmt: skip
    checkpoints = sorted({0, args.check_at, args.deletions})
    summary = summarise(curves, checkpoints)
    last = models[f"S3T B={args.slices}"].clone()
    stream(last, np.random.default_rng(1000).permutation(ids)[: args.deletions].tolist(),
           bundle.test)  # fmt: skip
    exact = exactness_check(last, bundle, backbone)
    cap = capacity_grid(args.trials)
    best = f"S3T B={args.slices}"
    s3t_k, sisa_k = (summary[n]["acc_at"][str(args.check_at)] for n in (best, "SISA (dead_shard)"))
    s3t_0, sisa_0 = (summary[n]["acc_at"]["0"] for n in (best, "SISA (dead_shard)"))
    p99 = summary[best]["latency_ms"]["p99"]
    targets = {
        "simulation within 5% of theory": (cap["max_abs_rel_error"] <= 0.05,
                                           f"max {100 * cap['max_abs_rel_error']:.2f}%"),
        "S3T/SISA capacity >= 1.5 at m=5, L=4, B=4": (cap["m5_L4_B4"]["ratio"] >= 1.5,
                                                      f"{cap['m5_L4_B4']['ratio']:.3f}"),
        "deletion p99 <= 10 ms in process": (p99 is not None and p99 <= 10,
                                             f"{best}: p99 {p99:.3f} ms"),
        "S3T within 3 points of SISA before deletions": (abs(s3t_0 - sisa_0) <= 3,
                                                         f"{s3t_0:.2f} vs {sisa_0:.2f}"),
        f"S3T above SISA after {args.check_at} deletions (same dead_shard policy)": (
            s3t_k > sisa_k, f"{s3t_k:.2f} vs {sisa_k:.2f}"),
        "exact after retrain (bit-identical)": (exact["bit_identical"],
                                                f"max |diff| {exact['max_abs_diff']}"),
    }  # fmt: skip
    res = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {"train": len(bundle.train), "test": len(bundle.test),
                 "public": len(bundle.public)},
        "train_seconds": {n: e.train_seconds for n, e in models.items()},
        "single_model_acc": single.accuracy(bundle.test),
        "streams": summary,
        "capacity": cap,
        "exactness": exact,
        "targets": {k: [bool(ok), why] for k, (ok, why) in targets.items()},
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    res["train_seconds"]["SISA (eager)"] = res["train_seconds"]["SISA (dead_shard)"]
    res["train_seconds"]["single model"] = single.train_seconds
    args.out.mkdir(parents=True, exist_ok=True)
    figure(summary, args.out / "s3t_deletions.png")
    atomic_write_text(args.out / "results.json", json.dumps(res, indent=1))
    atomic_write_text(args.out / "report.md", report(res))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
