"""Per architecture of the bring-your-own-model matrix: one training epoch of its PEFT set, and
the Fast-NTK state precompute per sample as a multiple of its FLOP limit (``ntk.cost``: the
batched Jacobian's FLOPs counted by torch's FlopCounterMode plus the Gram update C P (P + 1),
at the float32 GEMM rate measured on the threads used; the measure of resnet18/bn in
``fast_ntk.py``, where the fast path runs at <= 2x). The epoch is also set against its own
limit (forward + backward FLOPs of the epoch at the same rate).

Matrix: timm resnet18, efficientnet_b0, convnext_atto (``norm``: every norm layer's affine +
head), timm ViT-Tiny (``prompts``: 5 shallow visual prompts + head), torchvision resnet18 and
mobilenet_v3_small (``norm``). Models at random init, synthetic images. A state that cannot fit
the memory budget is refused before any work, and the row says so with the estimate.

    PYTHONPATH=src python benchmarks/arch_flops.py --threads 2 --out results/arch_flops
    PYTHONPATH=src python benchmarks/arch_flops.py --samples 4 --epoch-samples 8 \
        --budget-gib 1 --out /tmp/arch_flops                       # a check that it runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from fast_ntk import epoch_seconds, log, timed  # the Fast-NTK benchmark's epoch and timers

from unlearnkit.data import load_dataset
from unlearnkit.models import count_parameters, select_trainable
from unlearnkit.models.prompts import add_visual_prompts
from unlearnkit.ntk import MemoryBudgetError, compute_gram, gemm_flops_per_s, precompute_cost
from unlearnkit.ntk.memory import check_state_fits, precompute_memory
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.ntk.rules import jacobian_plan
from unlearnkit.runtime import apply_threads, thread_report

GIB = 2**30
Builder = Callable[[int, int], nn.Module]  # (num_classes, image size) -> model


def _timm(name: str) -> Builder:
    return lambda classes, size: timm.create_model(name, pretrained=False, num_classes=classes)


def _timm_vit(classes: int, size: int) -> nn.Module:
    """ViT-Tiny with about 64 tokens at small sizes (4 px patches at 32 px), visual prompts."""
    patch = 16 if size >= 128 else max(1, size // 8)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=classes, img_size=size,
        patch_size=patch,
    )  # fmt: skip
    return add_visual_prompts(vit, num_prompts=5)


def _torchvision(name: str, head: Callable[[nn.Module], nn.Module]) -> Builder:
    def build(classes: int, size: int) -> nn.Module:
        model = torchvision.models.get_model(name, weights=None, num_classes=classes)
        if not hasattr(model, "get_classifier"):  # until the shared head finder covers it
            model.get_classifier = lambda: head(model)
        return model

    return build


ARCHS: dict[str, tuple[Builder, str]] = {
    "timm:resnet18": (_timm("resnet18"), "norm"),
    "timm:efficientnet_b0": (_timm("efficientnet_b0"), "norm"),
    "timm:convnext_atto": (_timm("convnext_atto"), "norm"),
    "timm:vit_tiny": (_timm_vit, "prompts"),
    "torchvision:resnet18": (_torchvision("resnet18", lambda m: m.fc), "norm"),
    "torchvision:mobilenet_v3_small": (
        _torchvision("mobilenet_v3_small", lambda m: m.classifier[-1]),
        "norm",
    ),
}


def train_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward + backward FLOPs of one training step (only the PEFT set has requires_grad)."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure(arch: str, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    build, mode = ARCHS[arch]
    torch.manual_seed(0)
    classes = args.num_classes
    bundle = load_dataset(
        "synthetic", n_train=max(args.samples, args.epoch_samples), n_test=10,
        image_size=args.image_size, channels=3, num_classes=classes,
    )  # fmt: skip
    model = build(classes, args.image_size)
    names = select_trainable(model, mode)
    space = ParamSpace.from_model(model, names)
    p, total = count_parameters(model, names)
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fallback = jacobian_plan(model, space).generic
    row: dict[str, Any] = {"arch": arch, "mode": mode, "P": p, "total_params": total,
                           "per_sample_fallback": fallback}  # fmt: skip
    log(f"{arch} ({mode}): P = {p:,} of {total:,}; fallback: {fallback or 'none'}")

    epoch = bundle.train.subset(torch.arange(args.epoch_samples))
    step = epoch.subset(torch.arange(min(64, len(epoch))))
    epoch_flops = train_step_flops(model, step.x, step.y) / len(step) * len(epoch)
    row["epoch_s"] = epoch_seconds(model, epoch, names)
    row["epoch_limit_s"] = epoch_flops / rate
    row["epoch_x_limit"] = row["epoch_s"] / row["epoch_limit_s"]
    model.load_state_dict(w0)  # the precompute linearises at w0
    log(f"  one epoch of {len(epoch)}: {row['epoch_s']:.2f} s (x{row['epoch_x_limit']:.1f})")

    data = bundle.train.subset(torch.arange(args.samples))
    cost = precompute_cost(model, names, data.x[:4], classes, w0, gemm_rate=rate)
    row["cost_model"] = cost.as_dict()
    est = precompute_memory(p, len(data) * classes, classes, args.chunk)
    row["state_gib"] = est.gib
    try:
        check_state_fits(est, p, None if args.budget_gib is None else int(args.budget_gib * GIB))
    except MemoryBudgetError as exc:
        row["refused"] = str(exc)
        log(f"  precompute refused: {exc}")
        return row
    seconds = timed(compute_gram, model, names, w0, data, classes, chunk_size=args.chunk)
    per = seconds / len(data)
    row.update(precompute_s=seconds, s_per_sample=per, limit_s_per_sample=cost.limit_s_per_sample,
               x_limit=cost.multiple(per), limit_check=cost.check(per).as_dict())  # fmt: skip
    log(f"  precompute: {per:.4f} s/sample ({cost.check(per).verdict})")
    return row


def report(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"# Training epoch and Fast-NTK precompute per architecture ({doc['image_size']} px, "
        f"{doc['num_classes']} classes, {m['torch_threads']} threads, float32 GEMM "
        f"{doc['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s, load {m['load_average_1_5_15'][0]:.2f})",
        "",
        f"Epoch: {doc['epoch_samples']} samples, batch 64. Precompute: {doc['samples']} samples, "
        f"chunk {doc['chunk']}, limit = (Jacobian FLOPs + C P (P + 1)) per sample at that rate.",
        "",
        "| arch | mode | P | epoch s (x limit) | precompute s/sample | x limit | fallback |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        pre = (
            f"refused ({r['state_gib']:.1f} GiB) | -"
            if "refused" in r
            else f"{r['s_per_sample']:.4f} | {r['x_limit']:.1f}"
            + ("" if r.get("limit_check", {}).get("valid", True) else " INVALID FLOOR")
        )
        lines.append(
            f"| {r['arch']} | {r['mode']} | {r['P']:,} | {r['epoch_s']:.2f} "
            f"(x{r['epoch_x_limit']:.1f}) | {pre} | {len(r['per_sample_fallback']) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--archs", default=",".join(ARCHS), help="comma-separated, from: " + ", ".join(ARCHS)
    )
    ap.add_argument("--samples", type=int, default=256, help="samples of the timed precompute")
    ap.add_argument("--epoch-samples", type=int, default=1024, help="samples of the timed epoch")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--budget-gib", type=float, default=None, help="default: free memory")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("results/arch_flops"))
    args = ap.parse_args()
    archs = args.archs.split(",")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        ap.error(f"unknown architecture {unknown[0]!r}; choose from {', '.join(ARCHS)}")
    apply_threads(args.threads)
    rate = gemm_flops_per_s()
    start = time.perf_counter()
    rows = [measure(arch, args, rate) for arch in archs]
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    wall = time.perf_counter() - start
    doc = {**settings, "gemm_flops_per_s": rate, "machine": thread_report(), "wall_s": wall,
           "rows": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "report.md").write_text(report(doc))
    print(report(doc))


if __name__ == "__main__":
    main()
