"""S3T vs SISA on a real data set at scale (default: the full Fashion-MNIST, 42,000 samples in D),
every time measured in one run; writes results/fashion_mnist/s3t/ (JSON, report.md, PNG).

One frozen smallcnn backbone pretrained on the public 30% (the data set's preset recipe), then
S3T (m shards, L slices, B sequences of LoRA blocks) and SISA (one LoRA model per shard, a
checkpoint per slice) with the same stage recipe. One stream of uniformly random deletions,
one request per sample (the same order for both schemes), under the same retrain policy
(``dead_shard``: a shard retrains once it serves nothing). At every checkpoint (50 / 100 / 200 /
500 deletions) the test accuracy, the retrains and retrain seconds so far, and the live
shards; per deletion the latency (switching blocks off, and with a retrain).

    python benchmarks/s3t_scale.py --threads 2
    python benchmarks/s3t_scale.py --subset 3000 --checkpoints 5,10 --out /tmp/s3t   # a check
    python benchmarks/s3t_scale.py --shards 10 --rank 8 --adapt 3 --save runs/fashion-preset \
        --out results/fashion_mnist/s3t_preset   # the ensemble s3t_latency.py serves

``--adapt`` (all | K | a name pattern, as benchmarks/s3t_trunk_study.py parses it) sets which
layers both schemes' blocks adapt (the frozen layers below form the shared trunk); without it
the configs' default. A ``--subset`` run records the subset in the ensembles' data reference,
so a saved one reloads (and serves) on the same samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))
from s3t import pct  # p50/p99 in ms, the digits benchmark's definition

from unlearnkit.data import load_dataset
from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact import (
    EnsembleRecipe,
    S3TConfig,
    S3TEnsemble,
    SISAConfig,
    build_ensemble,
    check_ensemble,
)
from unlearnkit.exact.recipe import make_backbone, stack_spec
from unlearnkit.exact.stack import build_backbone
from unlearnkit.experiment import stage_record
from unlearnkit.metrics import measure_cost, peak_rss_mb
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.recipe.presets import DATASET_PRESETS
from unlearnkit.runtime import apply_threads, thread_report
from unlearnkit.training import TrainConfig, accuracy


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_adapt(value: str) -> int | str | None:
    """``--adapt``: "all" -> None (every layer), "K" -> the last K layers, else a name pattern."""
    return None if value == "all" else int(value) if value.isdigit() else value


def configs(args: argparse.Namespace) -> dict[str, Any]:
    stage = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        schedule="cosine")  # fmt: skip
    common = dict(num_shards=args.shards, num_slices=args.slices, lora_rank=args.rank,
                  train=stage, retrain_policy=args.policy, head_init=args.head_init,
                  seed=0)  # fmt: skip
    if args.adapt is not None:  # else the configs' own default
        common["adapt"] = parse_adapt(args.adapt)
    return {
        f"S3T B={args.sequences}": S3TConfig(num_sequences=args.sequences, **common),
        "SISA": SISAConfig(**common),
    }


def backbone_alone_accuracy(spec: Any, backbone: dict, test: Any) -> float:
    """Test accuracy of the frozen backbone with its own head (the public split's model, no
    block): the figure an ensemble has to beat to earn its cost."""
    net, head = build_backbone(spec, backbone)
    return accuracy(torch.nn.Sequential(net, head), test)


def checkpoint_row(ens: Any, test: Any, deleted: int, latencies: list[float],
                   with_retrain: list[float]) -> dict[str, Any]:  # fmt: skip
    start = time.perf_counter()
    acc = ens.accuracy(test)
    return {
        "deleted": deleted,
        "test_acc": acc,
        "retrains": ens.retrains_done,
        "retrain_seconds": ens.retrain_seconds,
        "live_shards": len(ens.serving_plan()),
        "mean_prefix": float(ens.prefix_lengths().max(axis=1).mean()),
        "deletions_without_retrain": len(latencies),
        "deletions_with_retrain": len(with_retrain),
        "eval_seconds": time.perf_counter() - start,
    }


def run_stream(ens: Any, order: list[int], checkpoints: list[int], test: Any) -> dict[str, Any]:
    """Delete ``order`` one request per sample; a row at every checkpoint."""
    rows = [checkpoint_row(ens, test, 0, [], [])]
    latency: list[float] = []
    latency_retrain: list[float] = []
    for n, sample in enumerate(order, start=1):
        before = ens.retrains_done
        start = time.perf_counter()
        ens.delete([sample])
        took = time.perf_counter() - start
        (latency if ens.retrains_done == before else latency_retrain).append(took)
        if n in checkpoints:
            rows.append(checkpoint_row(ens, test, n, latency, latency_retrain))
            r = rows[-1]
            log(f"  {n} deletions: test {r['test_acc']:.2f}%, {r['retrains']} retrains "
                f"({r['retrain_seconds']:.0f} s), {r['live_shards']} live shards")  # fmt: skip

    return {
        "rows": rows,
        "latency_ms": {"p50": pct(latency, 50), "p99": pct(latency, 99), "n": len(latency)},
        "latency_with_retrain_ms": {"p50": pct(latency_retrain, 50),
                                    "p99": pct(latency_retrain, 99), "n": len(latency_retrain)},
    }  # fmt: skip


def figure(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in res["streams"].items():
        d = [r["deleted"] for r in s["rows"]]
        ax1.plot(d, [r["test_acc"] for r in s["rows"]], marker="o", label=name)
        ax2.plot(d, [r["retrains"] for r in s["rows"]], marker="o", label=name)
    ax1.set(xlabel="deletions", ylabel="test accuracy (%)", title="accuracy under deletions")
    ax2.set(xlabel="deletions", ylabel="shard retrains (cumulative)", title="retrains")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def targets(res: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    s3t_name = next(n for n in res["streams"] if n.startswith("S3T"))
    s3t, sisa = res["streams"][s3t_name]["rows"], res["streams"]["SISA"]["rows"]
    acc = [(a["deleted"], a["test_acc"], b["test_acc"]) for a, b in zip(s3t, sisa, strict=True)]
    ret = [(a["deleted"], a["retrains"], b["retrains"]) for a, b in zip(s3t, sisa, strict=True)]
    acc_txt = ", ".join(f"{d}: {a:.2f} vs {b:.2f}" for d, a, b in acc)
    ret_txt = ", ".join(f"{d}: {a} vs {b}" for d, a, b in ret[1:])
    return {
        "S3T accuracy >= SISA at every point": (all(a >= b for _, a, b in acc), acc_txt),
        "S3T fewer retrains than SISA at every checkpoint": (
            all(a < b for _, a, b in ret[1:]), ret_txt),
    }  # fmt: skip


def report(res: dict[str, Any]) -> str:
    a, d = res["args"], res["data"]
    lines = [
        f"# S3T vs SISA on {a['dataset']} at scale",
        "",
        f"smallcnn backbone pretrained on the public split ({d['public']} samples, "
        f"{res['pretrain_config']['epochs']} epochs), frozen; D = {d['train']} samples, "
        f"accuracy on {d['test']} test images (a seeded sample). m = {a['shards']} shards, "
        f"L = {a['slices']} slices, "
        f"B = {a['sequences']}, LoRA r = {a['rank']}, adapt {res.get('adapt') or 'all'}, "
        f"{a['epochs']} epoch(s) per stage "
        f"(lr {a['lr']}, batch {a['batch_size']}); first-stage heads from "
        f"{a.get('head_init', 'random')}; policy {a['policy']}. One stream of "
        f"{max(res['checkpoints'])} uniform random deletions, one request per sample. "
        f"{res['threads']} thread(s), load {res['machine']['load_average_1_5_15']}. "
        f"Total {res['seconds']:.0f} s, peak RSS {res['peak_rss_mb']:.0f} MB.",
        "",
        "## Training",
        "",
        "| scheme | train s | test % |",
        "|---|---|---|",
        f"| backbone alone (its own head, no block) | 0 | "
        f"{res.get('backbone_alone_test_acc', float('nan')):.2f} |",
    ]
    for name, s in res["streams"].items():
        lines.append(
            f"| {name} | {res['train_seconds'][name]:.0f} | {s['rows'][0]['test_acc']:.2f} |"
        )
    lines += [
        "",
        "## Under deletions",
        "",
        "| scheme | deleted | test % | retrains | retrain s | live shards | mean served depth |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in res["streams"].items():
        for r in s["rows"]:
            lines.append(
                f"| {name} | {r['deleted']} | {r['test_acc']:.2f} | {r['retrains']} | "
                f"{r['retrain_seconds']:.0f} | {r['live_shards']} | {r['mean_prefix']:.2f} |"
            )
    lines += ["", "| scheme | delete p50 ms | p99 ms | n | with retrain p50 s | p99 s | n |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in res["streams"].items():
        lat, lr = s["latency_ms"], s["latency_with_retrain_ms"]

        def f(v: float | None, scale: float = 1.0, digits: int = 2) -> str:
            return "-" if v is None else f"{v / scale:.{digits}f}"

        lines.append(
            f"| {name} | {f(lat['p50'])} | {f(lat['p99'])} | {lat['n']} | "
            f"{f(lr['p50'], 1000, 1)} | {f(lr['p99'], 1000, 1)} | {lr['n']} |"
        )
    lines += ["", "![accuracy and retrains](s3t_scale.png)", "", "## Stages", "",
              "| stage | wall s | extra peak MB |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {s['stage']} | {s['time_s']:.1f} | {s['peak_mem_mb']:.0f} |"
              for s in res["stages"]]  # fmt: skip
    lines += ["", "## Claims", ""]
    lines += [
        f"- {k}: {'met' if ok else 'NOT met'} ({why})" for k, (ok, why) in res["targets"].items()
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--shards", type=int, default=50)
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--adapt", default=None,
                    help="which layers the blocks adapt: all | K (the last K) | a name "
                         "pattern; default: the configs' default")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=1, help="epochs of one stage")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--pretrain-epochs", type=int, default=None,
                    help="default: the data set's preset")  # fmt: skip
    ap.add_argument("--policy", default="dead_shard")
    ap.add_argument("--head-init", default="backbone", choices=["backbone", "random"])
    ap.add_argument("--backbone", type=Path, default=None,
                    help="reuse the backbone of this saved ensemble (no pretraining)")  # fmt: skip
    ap.add_argument("--eval-size", type=int, default=2000,
                    help="accuracy on a seeded sample of this many test images (0: all); "
                         "prediction costs one forward per live shard")  # fmt: skip
    ap.add_argument("--checkpoints", default="50,100,200,500")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--save", type=Path, default=None,
                    help="save the trained S3T ensemble (for benchmarks/service.py)")  # fmt: skip
    ap.add_argument("--backbone-only", action="store_true",
                    help="only measure the backbone alone: OUT/backbone_alone.json")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("results/fashion_mnist/s3t"))
    args = ap.parse_args()
    threads = apply_threads(args.threads)
    machine = thread_report()
    start = time.perf_counter()
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",")})
    preset = DATASET_PRESETS.get(args.dataset, {}).get("pretrain_config", {})
    pretrain = TrainConfig(**{**preset, **({"epochs": args.pretrain_epochs}
                                           if args.pretrain_epochs else {})})  # fmt: skip
    # the subset goes into the data reference a saved ensemble keeps: it reloads the same samples
    options = {"subset": args.subset} if args.subset is not None else {}
    recipe = EnsembleRecipe(dataset=args.dataset, data_dir=args.data_dir,
                            pretrain_config=pretrain, dataset_options=options)  # fmt: skip
    stages: list[dict[str, Any]] = []

    def stage(name: str, cost: Any) -> None:
        stages.append(stage_record(name, cost))
        log(f"{name}: {cost.time_s:.1f} s")

    with measure_cost() as cost:
        bundle = load_dataset(args.dataset, args.data_dir, seed=0, public_fraction=0.3,
                              subset=args.subset)  # fmt: skip
    stage("load data", cost)
    schemes = configs(args)
    for cfg in schemes.values():  # a bad --adapt / --slices fails here, before any training
        check_ensemble(cfg, bundle)
    if args.backbone is not None:
        backbone = S3TEnsemble.load(args.backbone).backbone_state
        log(f"backbone from {args.backbone}")
    else:
        with measure_cost() as cost:
            backbone = make_backbone(recipe, stack_spec(next(iter(schemes.values())), bundle),
                                     bundle, seed=0)  # fmt: skip
        stage(f"pretrain the backbone on {len(bundle.public)} public samples", cost)
    test = bundle.test
    if 0 < args.eval_size < len(test):
        keep = np.random.default_rng(7).choice(len(test), args.eval_size, replace=False)
        test = test.subset(torch.from_numpy(np.sort(keep)))
    spec = stack_spec(next(iter(schemes.values())), bundle)
    backbone_acc = backbone_alone_accuracy(spec, backbone, test)
    log(f"backbone alone: {backbone_acc:.2f}% on {len(test)} test images")
    if args.backbone_only:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"backbone_alone_test_acc": backbone_acc, "test_images": len(test),
                  "eval_sample_seed": 7, "pretrain_config": pretrain.model_dump(),
                  "data": {"train": len(bundle.train), "public": len(bundle.public)},
                  "stages": stages, "threads": threads, "machine": machine}  # fmt: skip
        atomic_write_text(args.out / "backbone_alone.json", json.dumps(record, indent=1))
        return
    order = np.random.default_rng(1000).permutation(bundle.train.ids.numpy())
    order = order[: max(checkpoints)].tolist()
    streams, train_s = {}, {}
    for name, cfg in schemes.items():
        with measure_cost() as cost:
            ens = build_ensemble(recipe, cfg, bundle=bundle, backbone=backbone)
        train_s[name] = ens.train_seconds
        stage(f"train {name}", cost)
        if args.save is not None and isinstance(cfg, S3TConfig):
            ens.save(args.save)
        with measure_cost() as cost:
            streams[name] = run_stream(ens, order, checkpoints, test)
        stage(f"{name}: {len(order)} deletions", cost)
    res: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {"train": len(bundle.train), "test": len(test),
                 "public": len(bundle.public)},
        "pretrain_config": pretrain.model_dump(),
        "checkpoints": checkpoints,
        "adapt": next(iter(schemes.values())).adapt,  # as the configs hold it (None: all)
        "backbone_alone_test_acc": backbone_acc,
        "train_seconds": train_s,
        "streams": streams,
        "stages": stages,
        "threads": threads,
        "machine": machine,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip
    res["targets"] = targets(res)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(res, args.out / "s3t_scale.png")
    atomic_write_text(args.out / "results.json", json.dumps(res, indent=1))
    atomic_write_text(args.out / "report.md", report(res))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    try:
        main()
    except UnlearnkitError as exc:  # a bad value (e.g. --adapt for --slices): one line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:  # a config field out of range (e.g. --adapt 0)
        first = exc.errors()[0]
        print(f"error: {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        sys.exit(2)
