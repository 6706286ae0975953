"""The study that sets the shared-trunk defaults (issue 26 item 4): shards, adapted depth, LoRA
rank and epochs per slice against accuracy before and after uniform deletions, retrains over
the stream and packed prediction latency, S3T and SISA side by side, over seeds (95% CIs).

``--design oat`` (the default): one factor at a time around a centre (m = 10, the last 3
layers adapted, rank 8, 1 epoch per slice), the centre over ``--seeds`` seeds and every other
point over ``--sweep-seeds`` (a full grid of 4 x 3 x 3 x 2 points x 3 seeds is days on 2
cores); ``--design grid`` runs every combination. Each deletion checkpoint deletes the stream's
next ids as one request, so the retrain counts are per checkpoint batch (the one-request-per-
sample stream is benchmarks/s3t_scale.py's). Every configuration is trained on one frozen
backbone per seed (pretrained on the public split, the CLI's recipe); the same deletion stream
(uniform over the training ids, per seed) is replayed on S3T and SISA with the ``dead_shard``
policy. The frozen backbone alone (its own head) is the baseline an ensemble must beat.
Latency: the packed pass on 16 test images, in process, after training (p50 of
``--latency-reps``): run it on an idle machine.

    # the study (hours; on an idle machine, for the latency column)
    PYTHONPATH=src python benchmarks/s3t_trunk_study.py --dataset fashion_mnist \
        --out results/s3t_trunk/study
    # a check that it runs (tiny: digits, one point, one seed)
    PYTHONPATH=src python benchmarks/s3t_trunk_study.py --dataset digits --design grid \
        --shards 2 --adapt 3 --ranks 4 --epochs 1 --seeds 1 --deletions 5 10 --max-train 300 \
        --out /tmp/study
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.exact import EnsembleRecipe, S3TConfig, SISAConfig, build_ensemble
from unlearnkit.exact.recipe import load_data, make_backbone, stack_spec
from unlearnkit.metrics.intervals import INTERVAL_METHOD, mean_ci95, paired_verdict
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.runtime import apply_threads
from unlearnkit.training import TrainConfig, predict_logits

SCHEMES = {"s3t": S3TConfig, "sisa": SISAConfig}


def _adapt(value: str) -> int | str | None:
    return None if value == "all" else int(value) if value.isdigit() else value


def backbone_alone(spec: Any, state: dict, test: Any) -> float:
    model = spec.architecture.build()
    model.load_state_dict(state)
    return 100.0 * float((predict_logits(model.eval(), test.x).argmax(1) == test.y).float().mean())


def latency_ms(ens: Any, x: torch.Tensor, reps: int) -> float:
    ens.predict_logits(x)  # builds the packed view once
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        ens.predict_logits(x)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def run_one(cfg: Any, recipe: EnsembleRecipe, bundle: Any, backbone: dict, stream: list[int],
            checkpoints: list[int], reps: int) -> dict[str, Any]:  # fmt: skip
    ens = build_ensemble(recipe, cfg, bundle=bundle, backbone=backbone)
    out: dict[str, Any] = {"train_seconds": ens.train_seconds, "acc": {}, "retrains": {}}
    out["latency_ms_16"] = latency_ms(ens, bundle.test.x[:16], reps)
    done = 0
    for k in [0, *checkpoints]:
        ens.delete(stream[done:k])
        done = k
        out["acc"][str(k)] = ens.accuracy(bundle.test)
        out["retrains"][str(k)] = ens.retrains_done
    return out


def ci95(values: list[float]) -> list[float]:
    """[mean, low, high]: the project's interval over seeds (``metrics.intervals``: percentile
    bootstrap, inside the values' range); low = high = mean from one seed."""
    mean, interval = mean_ci95(values)
    low, high = interval if interval is not None else (mean, mean)
    return [round(mean, 3), round(low, 3), round(high, 3)]


def _cell(stat: list[float]) -> str:
    mean, low, high = stat
    return f"{mean:.2f}" if low == high == mean else f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def paired(rows: list[dict[str, Any]], checkpoints: list[int]) -> str:
    """S3T - SISA at every checkpoint, paired by seed (same backbone and deletion stream), for
    each point both schemes ran, with the harness's verdict rule (6 seeds before a claim)."""
    by_point: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        point = (r["shards"], r["adapt"], r["rank"], r["epochs"])
        by_point.setdefault(point, {})[r["scheme"]] = r
    diffs_head = " | ".join(f"S3T - SISA @{k}" for k in [0, *checkpoints])
    lines = [f"| m | adapt | rank | epochs | seeds | {diffs_head} | verdict at the last |",
             "|" + "---|" * (6 + len(checkpoints) + 1)]  # fmt: skip
    for point, schemes in by_point.items():
        if set(schemes) != {"s3t", "sisa"}:
            continue
        sisa = {r["seed"]: r for r in schemes["sisa"]["runs"]}
        runs = [(r, sisa[r["seed"]]) for r in schemes["s3t"]["runs"] if r["seed"] in sisa]
        cells, verdict = [], ""
        for k in [0, *checkpoints]:
            diffs = [a["acc"][str(k)] - b["acc"][str(k)] for a, b in runs]
            cells.append(_cell(ci95(diffs)))
            verdict = paired_verdict(diffs)
        lines.append("| " + " | ".join(map(str, [*point, len(runs), *cells, verdict])) + " |")
    return "\n".join(lines) + "\n"


def _gain(row: dict[str, Any], k: int, alone: dict[int, float]) -> str:
    """The ensemble minus its own seed's frozen backbone at checkpoint k (paired by seed)."""
    diffs = [r["acc"][str(k)] - alone[r["seed"]] for r in row["runs"] if r.get("seed") in alone]
    return _cell(ci95(diffs)) if diffs else "-"


def table(rows: list[dict[str, Any]], checkpoints: list[int], alone: dict[int, float]) -> str:
    last = ([0, *checkpoints])[-1]
    head = ["scheme", "m", "adapt", "rank", "epochs", "seeds",
            *[f"acc@{k}" for k in [0, *checkpoints]], "- backbone @0", f"- backbone @{last}",
            f"retrains@{last}", "train s", "latency ms (16)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = [_cell(r["acc"][str(k)]) for k in [0, *checkpoints]]
        cells = [r["scheme"], r["shards"], r["adapt"], r["rank"], r["epochs"], r["seeds"], *acc,
                 _gain(r, 0, alone), _gain(r, last, alone), f"{r['retrains'][0]:.1f}",
                 f"{r['train_seconds'][0]:.0f}", f"{r['latency_ms_16'][0]:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def write(
    args: argparse.Namespace,
    raw: dict[str, list[dict[str, Any]]],
    alone: dict[int, float],
    checkpoints: list[int],
    started: float,
    done: bool,
) -> None:
    """study.json / study.md from the runs so far (rewritten after every run: a study cut
    short keeps what it measured, marked ``complete: false``)."""
    rows = []
    for key, runs in raw.items():
        scheme, m, adapt, rank, epochs = json.loads(key)
        rows.append({
            "scheme": scheme, "shards": m, "adapt": adapt, "rank": rank, "epochs": epochs,
            "acc": {str(k): ci95([r["acc"][str(k)] for r in runs]) for k in [0, *checkpoints]},
            "retrains": ci95([r["retrains"][str(([0, *checkpoints])[-1])] for r in runs]),
            "train_seconds": ci95([r["train_seconds"] for r in runs]),
            "seeds": len(runs),
            "latency_ms_16": ci95([r["latency_ms_16"] for r in runs]),
            "runs": runs,
        })  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    res = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "complete": done, "backbone_alone_acc": ci95(list(alone.values())),
           "backbone_alone_runs": list(alone.values()),
           "backbone_alone_by_seed": {str(k): v for k, v in alone.items()},
           "wall_s": round(time.perf_counter() - started, 1), "threads": args.threads,
           "load_end": list(os.getloadavg()), "rows": rows}  # fmt: skip
    atomic_write_text(args.out / "study.json", json.dumps(res, indent=1) + "\n")
    md = f"Backbone alone: {_cell(ci95(list(alone.values())))}% (intervals: {INTERVAL_METHOD})\n\n"
    md += table(rows, checkpoints, alone) + "\n" + paired(rows, checkpoints)
    atomic_write_text(args.out / "study.md", md)
    if done:
        print(md)


def merge(args: argparse.Namespace) -> None:
    """One study from the runs of several (one process per seed, same points and checkpoints):
    every run and backbone kept, the intervals recomputed over all of them."""
    parts = [json.loads((d / "study.json").read_text()) for d in args.merge]
    checkpoints = sorted(parts[0]["args"]["deletions"])
    if any(sorted(p["args"]["deletions"]) != checkpoints for p in parts):
        raise SystemExit("--merge: the studies have different --deletions checkpoints")
    raw: dict[str, list[dict[str, Any]]] = {}
    alone: dict[int, float] = {}
    for part in parts:
        first = part["args"].get("first_seed", 0)  # files from before runs named their seed
        for row in part["rows"]:
            key = json.dumps([row[k] for k in ("scheme", "shards", "adapt", "rank", "epochs")])
            runs = [{"seed": first + i, **run} for i, run in enumerate(row["runs"])]
            raw.setdefault(key, []).extend(runs)
        backbones = part["backbone_alone_runs"]
        by_seed = part.get("backbone_alone_by_seed") or dict(enumerate(backbones, start=first))
        alone.update({int(k): v for k, v in by_seed.items()})
    for key, value in parts[0]["args"].items():  # the design, as the parts ran it
        if key not in ("out", "merge", "first_seed"):
            setattr(args, key, value)
    args.merge = [str(d) for d in args.merge]  # recorded: the folders merged
    args.parts_wall_s = [p["wall_s"] for p in parts]  # the merge's own wall_s is its own
    args.parts_load_end = [p["load_end"] for p in parts]  # as are wall_s and load_end
    write(
        args, raw, alone, checkpoints, time.perf_counter(), done=all(p["complete"] for p in parts)
    )


def design(args: argparse.Namespace) -> list[tuple[tuple[int, str, int, int], int]]:
    """(point, seeds) to run. ``grid``: every combination, ``--seeds`` each. ``oat`` (one factor
    at a time): the centre with ``--seeds`` seeds, and each other value of one factor (the rest
    at the centre) with ``--sweep-seeds``: 1 + 3 + 2 + 1 + 1 points instead of 4 x 2 x 2 x 2."""
    if args.design == "grid":
        grid = itertools.product(args.shards, args.adapt, args.ranks, args.epochs)
        return [(p, args.seeds) for p in grid]
    centre = (args.centre_shards, args.centre_adapt, args.centre_rank, args.centre_epochs)
    points = [(centre, args.seeds)]
    for axis, values in enumerate((args.shards, args.adapt, args.ranks, args.epochs)):
        for v in values:
            if v != centre[axis]:
                point = list(centre)
                point[axis] = v
                points.append((tuple(point), args.sweep_seeds))  # type: ignore[arg-type]
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--design", choices=["oat", "grid"], default="oat")
    ap.add_argument("--shards", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--adapt", nargs="+", default=["all", "4", "3"], help="all | K | pattern")
    ap.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--centre-shards", type=int, default=10)
    ap.add_argument("--centre-adapt", default="3")
    ap.add_argument("--centre-rank", type=int, default=8)
    ap.add_argument("--centre-epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3, help="seeds of every grid point / the centre")
    ap.add_argument("--sweep-seeds", type=int, default=1, help="seeds of the other oat points")
    ap.add_argument(
        "--first-seed", type=int, default=0,
        help="seed of the first run: one seed per process on a machine with cores to spare",
    )  # fmt: skip
    ap.add_argument(
        "--merge", type=Path, nargs="+", default=None,
        help="only merge these study folders' runs (e.g. one per seed) into --out",
    )  # fmt: skip
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    ap.add_argument(
        "--deletions",
        type=int,
        nargs="*",
        default=[50, 100, 200, 500],
        help="checkpoints (none: accuracy after training only, no retrains)",
    )
    ap.add_argument("--max-train", type=int, default=None, help="subsample (a quick check)")
    ap.add_argument("--latency-reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.merge:
        merge(args)
        return
    apply_threads(args.threads)
    recipe = EnsembleRecipe(dataset=args.dataset, public_fraction=0.3)
    bundle = load_data(recipe)
    if args.max_train is not None:
        bundle.train = bundle.train.subset(torch.arange(min(args.max_train, len(bundle.train))))
    checkpoints = sorted(args.deletions)
    points = design(args)
    raw: dict[str, list[dict[str, Any]]] = {}
    alone: dict[int, float] = {}
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + max(n for _, n in points)):
        spec = stack_spec(S3TConfig(seed=seed), bundle)
        backbone = make_backbone(recipe, spec, bundle, seed)
        alone[seed] = backbone_alone(spec, backbone, bundle.test)
        ids = bundle.train.ids.tolist()
        order = np.random.default_rng(1000 + seed).permutation(ids)
        stream = order[: max([0, *checkpoints])].tolist()
        for (m, adapt, rank, epochs), n_seeds in points:
            if seed - args.first_seed >= n_seeds:
                continue
            for scheme in args.schemes:
                cfg = SCHEMES[scheme](
                    num_shards=m, num_slices=args.slices, lora_rank=rank, adapt=_adapt(adapt),
                    retrain_policy="dead_shard", seed=seed,
                    train=TrainConfig(epochs=epochs, lr=0.01, batch_size=32, schedule="cosine"),
                )  # fmt: skip
                key = json.dumps([scheme, m, adapt, rank, epochs])
                t0 = time.perf_counter()
                got = run_one(cfg, recipe, bundle, backbone, stream, checkpoints,
                              args.latency_reps)  # fmt: skip
                got["wall_s"] = round(time.perf_counter() - t0, 1)
                got["seed"] = seed
                got["load_after"] = list(os.getloadavg())
                raw.setdefault(key, []).append(got)
                print(key, seed, json.dumps(got["acc"]), f"{got['latency_ms_16']:.1f} ms",
                      f"{got['wall_s']} s", flush=True)  # fmt: skip
                write(args, raw, alone, checkpoints, started, done=False)
    write(args, raw, alone, checkpoints, started, done=True)


if __name__ == "__main__":
    main()
