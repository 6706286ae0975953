"""FLOPs of one ensemble prediction: the per-shard loop against the packed shared-trunk pass.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (deterministic, so valid on a loaded
machine: no time is measured here) for a batch of 16 images, per architecture, scheme, number
of shards m and ``adapt`` (which layers the blocks adapt; the frozen layers below the first
adapted one form the trunk, run once). The loop runs every shard's whole network with its LoRA
branches; the packed pass runs the trunk once and every shard's merged adapted part. Ensembles
are built untrained with random adapters (FLOPs do not depend on the weights).

    PYTHONPATH=src python benchmarks/s3t_trunk_flops.py --out results/s3t_trunk
    PYTHONPATH=src python benchmarks/s3t_trunk_flops.py --shards 2 --out /tmp/trunk  # quick
    PYTHONPATH=src python benchmarks/s3t_trunk_flops.py --render --out results/s3t_trunk
        # flops.md (the table docs/s3t.md shows) from an existing flops.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from unlearnkit.data.base import ArraySplit
from unlearnkit.exact import S3TConfig, S3TEnsemble, SISAConfig, SISAEnsemble
from unlearnkit.exact.backbone import random_backbone
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.stack import StackSpec, build_backbone
from unlearnkit.exact.trunk import split_at_adapted

BATCH = 16
NARROW_RESNET = {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "stem_width": 16}
# name -> (model, in_chans, image size, options, the adapt settings compared)
ARCHS: dict[str, tuple[str, int, int, dict[str, Any], list[Any]]] = {
    "smallcnn-28": ("smallcnn", 1, 28, {}, [None, 3, 1]),
    "timm-resnet18-narrow-32": ("timm:resnet18", 3, 32, NARROW_RESNET, [None, "layer4.*"]),
}
SCHEMES = {"s3t": (S3TEnsemble, S3TConfig), "sisa": (SISAEnsemble, SISAConfig)}


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def build(scheme: str, arch: str, shards: int, adapt: Any, slices: int) -> Any:
    model, chans, size, options, _ = ARCHS[arch]
    cls, cfg_type = SCHEMES[scheme]
    extra = {"num_sequences": 3} if scheme == "s3t" else {}
    config = cfg_type(
        model=model,
        model_options=options,
        num_shards=shards,
        num_slices=slices,
        lora_rank=8,
        adapt=adapt,
        retrain_policy="manual",
        **extra,
    )
    n = shards * slices * 8
    data = ArraySplit(torch.zeros(n, chans, size, size), torch.zeros(n, dtype=torch.long),
                      torch.arange(n))  # fmt: skip
    spec = StackSpec(model, 10, chans, size, options, 8, 16.0, (), ("linear", "conv2d"), adapt)
    partition = Partition.create(data.ids, shards, slices, 0)
    ens = cls(config, spec, random_backbone(spec, 0), partition, cls._sequences(config), data)
    with torch.no_grad():
        for name, p in ens.stack.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.01)
    return ens


def row(scheme: str, arch: str, shards: int, adapt: Any, slices: int) -> dict[str, Any]:
    _, chans, size, _, _ = ARCHS[arch]
    ens = build(scheme, arch, shards, adapt, slices)
    x = torch.randn(BATCH, chans, size, size)
    loop = flops(lambda: ens.predict_logits(x, packed=False))
    packed = flops(lambda: ens.predict_logits(x))
    diff = float((ens.predict_logits(x) - ens.predict_logits(x, packed=False)).abs().max())
    bare, _ = build_backbone(ens.spec, ens.backbone_state)
    one = flops(lambda: bare.eval()(x))  # one frozen network, head aside
    split = split_at_adapted(bare, {n for g in ens.stack.groups for n in g})
    trunk = flops(lambda: split.trunk(x))
    return {
        "scheme": scheme,
        "arch": arch,
        "image_size": size,
        "batch": BATCH,
        "shards": shards,
        "slices": slices,
        "adapt": adapt,
        "adapted_layers": sum(len(g) for g in ens.stack.groups[: 1 if scheme == "sisa" else None]),
        "flops_loop": loop,
        "flops_packed": packed,
        "flops_one_network": one,
        "flops_trunk": trunk,
        "loop_over_packed": round(loop / packed, 3),
        "packed_in_networks": round(packed / one, 3),
        "max_abs_logit_diff": diff,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """Per architecture and adapt (one scheme: S3T and SISA count the same): the loop and the
    packed pass in units of one frozen network at the smallest and largest m."""
    lines = [
        "| network (16 images) | adapt | trunk share | loop / packed at m = {lo} (networks) "
        "| at m = {hi} | loop / packed at m = {hi} |",
        "|---|---|---|---|---|---|",
    ]
    shards = sorted({r["shards"] for r in rows})
    lo, hi = shards[0], shards[-1]
    lines[0] = lines[0].format(lo=lo, hi=hi)
    seen = set()
    for r in rows:
        key = (r["arch"], json.dumps(r["adapt"]))
        if key in seen:
            continue
        seen.add(key)
        same = {x["shards"]: x for x in rows if (x["arch"], json.dumps(x["adapt"]), x["scheme"])
                == (*key, r["scheme"])}  # fmt: skip
        one = r["flops_one_network"]

        def cell(x: dict[str, Any], one: int = one) -> str:
            return f"{x['flops_loop'] / one:.1f} / {x['flops_packed'] / one:.2f}"

        ratio = same[hi]["flops_loop"] / same[hi]["flops_packed"]
        adapt = "all (default)" if r["adapt"] is None else f"`{r['adapt']}`"
        lines.append(f"| {r['arch']} | {adapt} | {100 * r['flops_trunk'] / one:.1f}% | "
                     f"{cell(same[lo])} | {cell(same[hi])} | {ratio:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--render", action="store_true", help="only write flops.md from flops.json")
    args = ap.parse_args()
    if args.render:
        rows = json.loads((args.out / "flops.json").read_text())["rows"]
        (args.out / "flops.md").write_text(markdown(rows))
        return
    torch.set_num_threads(1)
    rows = []
    for arch in args.archs:
        for scheme in SCHEMES:
            for adapt in ARCHS[arch][4]:
                if scheme == "s3t" and isinstance(adapt, int) and adapt < args.slices:
                    continue  # S3T needs one disjoint layer group per stage
                for m in args.shards:
                    r = row(scheme, arch, m, adapt, args.slices)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "flops.json"
    out.write_text(json.dumps({"note": __doc__.split("\n\n")[0], "rows": rows}, indent=1) + "\n")
    (args.out / "flops.md").write_text(markdown(rows))
    print(f"wrote {out} and flops.md")


if __name__ == "__main__":
    main()
