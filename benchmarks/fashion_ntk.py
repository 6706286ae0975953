"""Fast-NTK on the full Fashion-MNIST training set (smallcnn + bn, the data set's preset recipe),
every time measured: training, the NTK precompute of D, a stream of deletion requests
(k = 1, 10, 100, each one downdate + the new model), a retrain on D_r, and the quality of
fast_ntk against retrain and fine-tuning for class and random forgetting.

    python benchmarks/fashion_ntk.py                       # -> results/fashion_mnist/fast_ntk/
    python benchmarks/fashion_ntk.py --subset 3000 --out /tmp/fn     # a check that it runs
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unlearnkit.config import build_config
from unlearnkit.experiment import run_seed, stage_record, summarise
from unlearnkit.metrics import measure_cost, peak_rss_mb
from unlearnkit.models import count_parameters
from unlearnkit.ntk import NTKState, delete_samples, precompute_state
from unlearnkit.ntk.deployment import state_solutions, unlearned_model
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.report import stages_table, summary_table, write_run
from unlearnkit.runtime import apply_threads, thread_report
from unlearnkit.training import accuracy

FORGETS = {"class3": "class:3", "random10": "random:0.1"}
STREAM = (1, 10, 100)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage(stages: list[dict[str, Any]], name: str, cost: Any) -> None:
    stages.append(stage_record(name, cost))
    log(f"{name}: {cost.time_s:.1f} s, +{cost.peak_mem_mb:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("results/fashion_mnist/fast_ntk"))
    args = ap.parse_args()
    threads = apply_threads(args.threads)
    machine = thread_report()
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fashion-ntk-"))
    state_path = work / "ntk_state.safetensors"
    overrides: dict[str, Any] = {}
    if args.subset is not None:
        overrides["dataset_options"] = {"subset": args.subset}

    def cfg_for(forget: str) -> Any:
        return build_config(
            {**overrides, "method_params": {"fast_ntk": {"state_path": str(state_path)}}},
            dataset=args.dataset,
            data_dir=args.data_dir,
            model="smallcnn",
            peft="bn",
            forget=forget,
            methods=["retrain", "finetune", "fast_ntk"],
            seeds=[args.seed],
        )

    cfg = cfg_for(FORGETS["class3"])
    stages: list[dict[str, Any]] = []
    with measure_cost() as cost:
        bundle = load_bundle(cfg)
    stage(stages, f"load data ({len(bundle.train)} in D, {len(bundle.test)} test)", cost)
    with measure_cost() as cost:
        original = train_original(cfg, bundle, args.seed)
    stage(stages, "pretrain on the public split + train on D", cost)
    test_acc = accuracy(original.model, bundle.test)
    log(f"original: test accuracy {test_acc:.2f}%")
    trainable, total = count_parameters(original.model, original.trainable)

    data = bundle.train.subset(torch.argsort(bundle.train.ids))  # D in id order
    lam = cfg.method_params["fast_ntk"].get("lam", 0.1)
    with measure_cost() as pre:
        precompute_state(
            original.model, original.trainable, original.initial_state, data,
            bundle.num_classes, lam=lam, progress=True,
        ).save(state_path)  # fmt: skip
    stage(stages, f"NTK precompute of D ({len(data)} samples, P = {trainable})", pre)

    # A stream of deletion requests on one state: each = Jacobian of the k samples + downdate
    # + the new (linearized) model, as a user or the service sees it.
    state = NTKState.load(state_path)
    gen = torch.Generator().manual_seed(args.seed)
    order = data.ids[torch.randperm(len(data), generator=gen)]
    stream: dict[str, dict[str, float]] = {}
    taken = 0
    for k in STREAM:
        ids = order[taken : taken + k]
        taken += k
        with measure_cost() as spent:
            delete_samples(original.model, state, original.initial_state, data.select_ids(ids))
            model = unlearned_model(
                original.model, original.trainable, original.initial_state,
                state_solutions(state), "linearized",
            )  # fmt: skip
        stream[str(k)] = {"time_s": spent.time_s, "peak_mem_mb": spent.peak_mem_mb}
        log(f"delete k={k}: {spent.time_s:.2f} s (test acc {accuracy(model, bundle.test):.2f}%)")

    settings: dict[str, Any] = {}
    for name, forget in FORGETS.items():
        cfg = cfg_for(forget)
        seed_rows = run_seed(
            cfg, bundle, args.seed, lambda m, t=name: log(f"{t}: {m}"), original, stages
        )
        doc = {
            "dataset": cfg.dataset, "model": cfg.model, "forget": forget, "seeds": [args.seed],
            "peft": cfg.peft, "trainable_params": trainable, "total_params": total,
            "config": cfg.model_dump(mode="json"), "machine": machine, "runs": seed_rows,
            "summary": summarise(seed_rows),
        }  # fmt: skip
        write_run(doc, args.out / name)
        settings[name] = doc["summary"]
    retrain_s = {n: s["retrain"]["time_s_mean"] for n, s in settings.items()}
    share = {
        k: {n: v["time_s"] / r for n, r in retrain_s.items()} for k, v in stream.items()
    }  # deletion time as a share of each measured retrain
    gaps = {
        n: {
            "forget_gap": s["fast_ntk"]["acc_forget_mean"] - s["retrain"]["acc_forget_mean"],
            "test_gap": s["fast_ntk"]["acc_test_mean"] - s["retrain"]["acc_test_mean"],
        }
        for n, s in settings.items()
    }
    out = {
        "dataset": args.dataset,
        "train_samples": len(bundle.train),
        "model": "smallcnn",
        "peft": "bn",
        "trainable_params": trainable,
        "total_params": total,
        "threads": threads,
        "machine": machine,
        "original_test_acc": test_acc,
        "precompute_s": pre.time_s,
        "precompute_s_per_sample": pre.time_s / len(data),
        "stream": stream,
        "retrain_s": retrain_s,
        "deletion_share_of_retrain": share,
        "quality_gaps": gaps,
        "stages": stages,
        "wall_s": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "summary": settings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"# Fast-NTK on {args.dataset}: smallcnn + bn, {len(bundle.train):,} samples in D",
        "",
        f"{trainable:,} of {total:,} parameters in the NTK (BatchNorm affine + head); "
        f"{threads} threads; original test accuracy {test_acc:.2f}%. All times measured.",
        "",
        f"Precompute of D: {pre.time_s:.0f} s ({1000 * pre.time_s / len(data):.2f} ms per "
        f"sample), peak +{pre.peak_mem_mb:.0f} MB.",
        "",
        "| deletion request k | time s | share of retrain (class 3 / random 10%) |",
        "|---|---|---|",
    ]
    for k, v in stream.items():
        s = share[k]
        lines.append(
            f"| {k} | {v['time_s']:.2f} | {100 * s['class3']:.2f}% / {100 * s['random10']:.2f}% |"
        )
    lines += [
        "",
        f"Retrain (measured, from the pretrained start on D_r): class 3 {retrain_s['class3']:.0f}"
        f" s, random 10% {retrain_s['random10']:.0f} s.",
        "",
    ]
    for name, forget in FORGETS.items():
        g = gaps[name]
        lines += [
            f"## forget `{forget}`",
            "",
            summary_table({"summary": settings[name]}),
            "",
            f"fast_ntk vs retrain: forget {g['forget_gap']:+.1f}, test {g['test_gap']:+.1f} "
            "points.",
            "",
        ]
    lines += [
        "## Stages",
        "",
        stages_table(
            {"stages": stages, "wall_s": out["wall_s"], "peak_rss_mb": out["peak_rss_mb"]}
        ),
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print((args.out / "report.md").read_text())
    state_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
