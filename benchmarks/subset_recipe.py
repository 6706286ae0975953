"""Is a ``--subset`` run a faithful small copy of the full one? (issue 25, item 6)

Trains the original (one seed; ``--methods``: then the comparison run on it, random 10% forget)
on a class-stratified subset of the data set under two recipes: with the preset's epoch
counts scaled to the subset's size (the default, ``recipe/scaling.py``) and with the preset's
counts as they are and the absolute 85% relearn threshold (``epoch_scaling: null``,
``relearn_threshold: 85``: the preset before this change). Beside each: the
original's test accuracy against the full-set figure read from a full run's results.json (not
re-run here), its optimisation steps, the relearn threshold of the seed and where it sits
against the original's own accuracy on D_f, and which methods end above the original.

    python benchmarks/subset_recipe.py        # -> results/fashion_mnist/subset_recipe.json
    python benchmarks/subset_recipe.py --recipe before    # one recipe per call, merged in --out
    python benchmarks/subset_recipe.py --subset 600 --methods finetune --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from unlearnkit.config import build_config
from unlearnkit.data.forget import select_forget
from unlearnkit.experiment import run_experiment, seed_threshold, unlearning_context
from unlearnkit.metrics import accuracy
from unlearnkit.models import create_model
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.recipe import TrainedModel, load_bundle, sized_for, starting_model, train_original
from unlearnkit.runtime import apply_threads, thread_report

FULL = Path("results/fashion_mnist/baselines/random10/results.json")


def full_figure(path: Path, seed: int) -> dict[str, Any] | None:
    """The original's accuracies on the full set for ``seed``, from a full run's results."""
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    for row in results["runs"]:
        if row["method"] == "original" and row["seed"] == seed:
            return {
                "source": str(path),
                "test_acc": row["acc"]["test"],
                "forget_acc": row["acc"]["forget"],
                "relearn_threshold": results["config"].get("relearn_threshold"),
                "train_epochs": results["config"]["train"]["epochs"],
                "pretrain_epochs": results["config"]["pretrain_config"]["epochs"],
            }
    return None


def train_in_stages(
    cfg: Any, bundle: Any, args: argparse.Namespace, name: str
) -> TrainedModel | None:
    """``train_original``, or its two halves in two calls (``--stage pretrain`` keeps w0 in
    ``--cache``, ``--stage train`` goes on from it), so no call runs long on a loaded machine.
    The second half is ``train_original`` from the saved w0 with pretraining done: the same
    seeded head reset and the same seeded training on D."""
    if args.stage == "all":
        return train_original(cfg, bundle, args.seed)
    start_file = args.cache / f"{name}-subset{args.subset}-seed{args.seed}-w0.pt"
    if args.stage == "pretrain":
        args.cache.mkdir(parents=True, exist_ok=True)
        torch.save(starting_model(cfg, bundle, args.seed).state_dict(), start_file)
        print(f"  w0 saved to {start_file}; run again with --stage train", flush=True)
        return None
    w0 = create_model(
        cfg.model, bundle.num_classes, bundle.in_chans, bundle.image_size, **cfg.model_options
    )
    w0.load_state_dict(torch.load(start_file))
    done = cfg.model_copy(update={"pretrain": False})
    return train_original(done, bundle, args.seed, model=w0)


def one_recipe(args: argparse.Namespace, scaled: bool) -> dict[str, Any] | None:
    """The original on the subset under one recipe: its steps, its accuracies, the seed's
    relearn threshold; with ``--methods``, the comparison run on that original too."""
    overrides: dict[str, Any] = {"dataset_options": {"subset": args.subset}}
    if not scaled:  # the preset as it was: full-set epochs, an absolute threshold
        overrides.update(epoch_scaling=None, relearn_threshold=85.0)
    methods = [m for m in args.methods.split(",") if m]
    cfg = build_config(
        overrides,
        dataset=args.dataset,
        data_dir=args.data_dir,
        forget="random:0.1",
        seeds=[args.seed],
        methods=methods or ["retrain"],
    )
    bundle = load_bundle(cfg)
    cfg = sized_for(cfg, bundle)
    start = time.perf_counter()
    original = train_in_stages(cfg, bundle, args, "scaled" if scaled else "before")
    if original is None:
        return None
    train_s = time.perf_counter() - start
    forget_ids = select_forget(bundle.train, cfg.forget, args.seed)
    ctx = unlearning_context(cfg, bundle, original, forget_ids, args.seed)
    test_acc, forget_acc = (
        accuracy(original.model, bundle.test),
        accuracy(original.model, ctx.forget),
    )
    threshold = seed_threshold(original.model, ctx, cfg)
    part: dict[str, Any] = {
        "epoch_scaling": cfg.epoch_scaling.model_dump() if cfg.epoch_scaling else None,
        "train": cfg.train.model_dump(),
        "pretrain_config": cfg.pretrain_config.model_dump(),
        "relearn_max_epochs": cfg.relearn_max_epochs,
        "d_size": len(bundle.train),
        "public_size": len(bundle.public) if bundle.public is not None else 0,
        "steps": {
            "train": cfg.train.epochs * math.ceil(len(bundle.train) / cfg.train.batch_size),
            "pretrain": cfg.pretrain_config.epochs
            * math.ceil(len(bundle.public or []) / cfg.pretrain_config.batch_size),
        },
        "original_test_acc": test_acc,
        "original_forget_acc": forget_acc,
        "relearn_threshold": threshold,
        "threshold_below_original": threshold < forget_acc,
        "train_s": train_s,
    }
    if methods:
        results = run_experiment(cfg, lambda s: print(f"  {s}", flush=True), bundle, original)
        rows = {r["method"]: r for r in results["runs"]}
        part["methods"] = {
            m: {
                "epochs": cfg.method_params.get(m, {}).get("epochs"),
                "test_acc": r["acc"]["test"],
                "forget_acc": r["acc"]["forget"],
                "retain_acc": r["acc"]["retain"],
                "tow": r.get("tow"),
                "relearn_epochs": r["relearn_epochs"],
                "above_original_test": r["acc"]["test"] > test_acc,
            }
            for m, r in rows.items()
            if m != "original"
        }
    return part


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--methods", default="", help="also compare these on the original (retrain included)"
    )
    ap.add_argument(
        "--recipe",
        choices=["scaled", "before", "both"],
        default="both",
        help="one recipe per call keeps a call short; each call adds its part to --out",
    )
    ap.add_argument("--full", type=Path, default=FULL, help="a full-set run's results.json")
    ap.add_argument("--stage", choices=["all", "pretrain", "train"], default="all")
    ap.add_argument("--cache", type=Path, default=Path("runs/subset_recipe"), help="w0 by stage")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/fashion_mnist/subset_recipe.json"))
    args = ap.parse_args()
    apply_threads(args.threads)
    doc: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if doc.get("subset") not in (None, args.subset) or doc.get("seed") not in (None, args.seed):
        doc = {}  # another setting: start afresh
    doc.update(
        dataset=args.dataset,
        subset=args.subset,
        seed=args.seed,
        forget="random:0.1",
        full_set=full_figure(args.full, args.seed),
    )
    doc.setdefault("machine", {})
    recipes = ["scaled", "before"] if args.recipe == "both" else [args.recipe]
    for name in recipes:
        print(f"{name} recipe on a subset of {args.subset}", flush=True)
        part = one_recipe(args, name == "scaled")
        if part is None:  # the pretraining half: nothing measured yet
            continue
        part["stage"] = args.stage
        doc[name] = part
        doc["machine"][name] = thread_report()
        print(
            f"  original: test {part['original_test_acc']:.2f}%, D_f "
            f"{part['original_forget_acc']:.2f}%, relearn threshold "
            f"{part['relearn_threshold']:.2f}% ({part['train']['epochs']} train epochs, "
            f"{part['steps']['train']} steps)",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
