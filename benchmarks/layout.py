"""Channels-last vs the default layout for the 28x28 smallcnn, side by side in one process.

The experiment loop runs every method and its evaluation with the convolution weights in
channels-last layout (``unlearnkit.training.channels_last``); this measures what that buys on
this machine: predictions (the evaluation's accuracies, batch 256) and training steps of the
BatchNorm + head set (batch 128), each timed in both layouts, alternating, best of ``--reps``.
Random init and random inputs: the layout changes speed only (outputs agree to 1e-4, tested).

    python benchmarks/layout.py --threads 2 --out results/fashion_mnist/layout
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.models import create_model, select_trainable
from unlearnkit.runtime import apply_threads, thread_report
from unlearnkit.training import TrainConfig, channels_last, predict_logits, train


def best_of(reps: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000, help="images predicted per timing")
    ap.add_argument("--steps", type=int, default=100, help="training steps per timing")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("results/fashion_mnist/layout"))
    args = ap.parse_args()
    threads = apply_threads(args.threads)
    machine = thread_report()
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 28)
    names = select_trainable(model, "bn")
    x = torch.randn(args.images, 1, 28, 28)
    batch = 128
    n_train = batch * args.steps
    rows = torch.arange(n_train) % len(x)  # the predicted images, cycled to fill the steps
    data = ArraySplit(x[rows], torch.randint(0, 10, (n_train,)), torch.arange(n_train))
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=batch, seed=0)

    def predict() -> object:
        return predict_logits(model, x)

    def fit() -> object:
        return train(model, data, cfg, names)

    timings: dict[str, dict[str, float]] = {"default": {}, "channels_last": {}}
    for _ in range(2):  # alternate, so drift in the machine's speed hits both layouts
        for layout in timings:
            with channels_last(model) if layout == "channels_last" else nullcontext():
                pred, step = best_of(args.reps, predict), best_of(args.reps, fit)
            prev = timings[layout]
            prev["predict_ms_per_image"] = min(
                prev.get("predict_ms_per_image", 1e9), 1e3 * pred / args.images
            )
            prev["train_ms_per_step"] = min(
                prev.get("train_ms_per_step", 1e9), 1e3 * step / args.steps
            )
    ratios = {
        key: timings["default"][key] / timings["channels_last"][key] for key in timings["default"]
    }
    doc = {"threads": threads, "machine": machine, "batch_predict": 256, "batch_train": batch,
           "images": args.images, "steps": args.steps, "timings": timings,
           "speedup_channels_last": ratios}  # fmt: skip
    lines = [
        f"# Layout: smallcnn 28x28, {threads} threads, load at start "
        f"{machine['load_average_1_5_15'][0]:.2f}",
        "",
        "| | default | channels-last | speed-up |",
        "|---|---|---|---|",
    ]
    for key, label in (("predict_ms_per_image", "predict, ms/image (batch 256)"),
                       ("train_ms_per_step", "train BN + head, ms/step (batch 128)")):  # fmt: skip
        lines.append(
            f"| {label} | {timings['default'][key]:.3f} | {timings['channels_last'][key]:.3f} | "
            f"x{ratios[key]:.2f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
