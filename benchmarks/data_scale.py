"""The data pipeline at scale (issue 25): ImageFolders of 10,000 / 50,000 / 100,000 JPEGs.

For each size the script
1. generates (once, cached under ``--data-root``) a folder of synthetic 96 px JPEGs: 10
   classes of coloured shapes (disc, square, triangle, cross, ring; outline or filled) at a
   random place, size and colour on a random noisy background;
2. runs ``unlearnkit train``, ``unlearnkit unlearn --method finetune --from`` and
   ``unlearnkit evaluate --from`` on it as real CLI subprocesses with ``--workers``, and
   records each stage's wall time, images per second and peak RSS (the stage process and,
   separately, its largest DataLoader worker). Training uses ``--subset`` (a stratified sample
   of the training pool, stated in the results), but every stage still loads the whole folder
   (``train`` reads and checks every file for the manifest; the later stages check it with a
   stat per file), so memory growth with the folder size is what the pipeline costs;
3. measures decode + transform throughput with ``--workers`` processes: unlearnkit's
   ``FileSamples`` through its DataLoader against a plain ``torchvision.datasets.ImageFolder``
   + ``DataLoader`` reading the same files with the same transforms (resize the shorter side,
   centre crop, float, normalise with the same constants), side by side in the same run,
   alternating, best of ``--repeats``.

    python benchmarks/data_scale.py                          # 10k, 50k, 100k
    python benchmarks/data_scale.py --sizes 300 --train-subset 200 --throughput-images 300

Memory per stage (MiB): the exact peak RSS of the stage process and of its largest DataLoader
worker (getrusage), and, sampled every 0.2 s (``proc_memory.py``: psutil or
/proc/PID/smaps_rollup), PSS and USS of the stage process and of the largest worker, the
workers' summed USS, and ``footprint_mb`` = stage peak RSS + workers' summed peak USS. A forked
worker's RSS counts the pages it still shares with its parent, so RSS is the wrong measure of
what workers cost; the RSS target is checked on the footprint.

Results: results/data_scale/n<SIZE>.json per size and results/data_scale/summary.json (the
memory columns of every stage at every size; peak RSS and footprint growth from the smallest
to the largest size; throughput ratio unlearnkit / torchvision). Targets from the issue:
growth <= 300 MB from 10k to 100k (on the footprint); ratio >= 0.9. Do not time on a loaded
machine: the results record the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from unlearnkit.data.base import ArraySplit  # noqa: E402
from unlearnkit.data.imagefolder import imagefolder_source, scan_folder  # noqa: E402
from unlearnkit.data.loader import in_order, iterate_batches  # noqa: E402
from unlearnkit.data.preprocess import Preprocessing  # noqa: E402
from unlearnkit.data.samples import FileSamples  # noqa: E402
from unlearnkit.models.checkpoint import atomic_write_text  # noqa: E402
from unlearnkit.runtime import apply_threads, thread_report  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
SHAPES = ("disc", "square", "triangle", "cross", "ring")
CLASSES = [f"{shape}_{style}" for shape in SHAPES for style in ("filled", "outline")]

# the stage process reports its own peak RSS and its children's (DataLoader workers) at exit,
# and the peaks of a thread sampling RSS / PSS / USS of itself and its workers (proc_memory.py)
STAGE = (
    "import atexit, json, os, resource, runpy, sys\n"
    f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
    "from proc_memory import MemoryWatch\n"
    "watch = MemoryWatch(os.getpid())\n"
    "watch.start()\n"
    "def _peak():\n"
    "    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "    print(f'PEAK_RSS_KIB {me} {kids}', file=sys.stderr)\n"
    "    print('PEAK_MEMORY_MIB ' + json.dumps(watch.peaks()), file=sys.stderr)\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['unlearnkit', *sys.argv[1:]]\n"
    "runpy.run_module('unlearnkit', run_name='__main__')\n"
)
# per stage: what the summary tabulates for every size (MiB)
MEMORY_COLUMNS = (
    "peak_rss_mb", "main_pss_mb", "main_uss_mb", "peak_worker_rss_mb", "worker_pss_mb",
    "worker_uss_mb", "workers_uss_sum_mb", "footprint_mb",
)  # fmt: skip


# -- data ---------------------------------------------------------------------------------------
def _draw(job: tuple[Path, int, int, int]) -> None:
    """One image: class ``label``'s shape on a random noisy background, saved as JPEG."""
    from PIL import Image, ImageDraw

    path, label, seed, size = job
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3)
    pixels = np.clip(background + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    shape, style = CLASSES[label].split("_")
    r = int(rng.integers(size // 6, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    colour = tuple(int(v) for v in (background + rng.integers(80, 176, 3)) % 256)
    box = (cx - r, cy - r, cx + r, cy + r)
    fill, width = (colour, 1) if style == "filled" else (None, max(2, r // 4))
    if shape == "disc":
        draw.ellipse(box, fill=fill, outline=colour, width=width)
    elif shape == "square":
        draw.rectangle(box, fill=fill, outline=colour, width=width)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill,
                     outline=colour, width=width)  # fmt: skip
    elif shape == "cross":
        t = max(2, r // (3 if style == "filled" else 5))
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=colour)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=colour)
    else:  # ring: a thick circle, or two thin ones
        draw.ellipse(box, outline=colour, width=max(3, r // 2) if style == "filled" else 2)
        if style == "outline":
            draw.ellipse((cx - r // 2, cy - r // 2, cx + r // 2, cy + r // 2), outline=colour,
                         width=2)  # fmt: skip
    img.save(path, quality=90)


def generate(root: Path, n: int, size: int, procs: int) -> Path:
    """A folder of ``n`` JPEGs (n / 10 per class), made once; an existing complete one is kept."""
    marker = root / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == {"n": n, "size": size}:
        return root
    jobs = []
    for i in range(n):
        label = i % len(CLASSES)
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:06d}.jpg", label, i, size))
    with Pool(procs) as pool:
        for _ in pool.imap_unordered(_draw, jobs, chunksize=256):
            pass
    marker.write_text(json.dumps({"n": n, "size": size}))
    return root


# -- CLI stages ---------------------------------------------------------------------------------
def stage(name: str, args: list[str], images: int) -> dict[str, Any]:
    """One CLI command as a subprocess: wall time, images/s and peak RSS (MiB)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STAGE, *args], capture_output=True, text=True,
                          env=ENV, timeout=4 * 3600)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_KIB")][-1]
    me, kids = (int(v) for v in line.split()[1:])
    sampled = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_MEMORY_MIB")][-1]
    peaks = json.loads(sampled.split(" ", 1)[1])
    rss = round(me / 1024, 1)
    return {
        "stage": name,
        "args": args,
        "wall_s": round(wall, 2),
        "images": images,
        "images_per_s": round(images / wall, 1),
        # exact peaks (getrusage): RSS counts pages a forked worker shares with the stage twice
        "peak_rss_mb": rss,
        "peak_worker_rss_mb": round(kids / 1024, 1),
        # sampled peaks (every 0.2 s, proc_memory.py): shared pages counted once
        "main_pss_mb": peaks.get("main_pss", 0.0),
        "main_uss_mb": peaks.get("main_uss", 0.0),
        "worker_pss_mb": peaks.get("worker_pss", 0.0),
        "worker_uss_mb": peaks.get("worker_uss", 0.0),
        "workers_uss_sum_mb": peaks.get("workers_uss_sum", 0.0),
        # what the RSS target is checked on: the stage's peak RSS + its workers' summed USS
        # (an upper bound: the two peaks need not coincide)
        "footprint_mb": round(rss + peaks.get("workers_uss_sum", 0.0), 1),
        "sampled_memory_mib": peaks,
        "stdout_tail": proc.stdout[-600:],
    }


def run_stages(data: Path, out: Path, args: argparse.Namespace, n: int) -> list[dict[str, Any]]:
    common = ["--workers", str(args.workers), "--threads", str(args.threads)]
    model = out / "model"
    # a test split of the same size at every folder size, so every stage decodes the same
    # number of images and memory growth is what the folder's size costs, not a longer run
    test_n = min(args.test_images, n // 5) if args.test_images else n - int(0.8 * n)
    fraction = test_n / n
    train_n = min(args.train_subset, n - test_n)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "dataset.yaml"
    config.write_text(f"dataset_options: {{test_fraction: {fraction!r}}}\n")
    train = stage("train", [
        "train", "--dataset", "imagefolder", "--data-dir", str(data), "--image-size",
        str(args.image_size), "--subset", str(train_n), "--model", args.model, "--peft", "full",
        "--no-pretrain", "--epochs", str(args.epochs), "--config", str(config), "--out",
        str(model), *common,
    ], args.epochs * train_n)  # fmt: skip
    forget = max(1, train_n // 10)
    finetune_epochs = 5  # finetune's default; the retrain reference trains --epochs on D_r
    unlearn = stage("unlearn_finetune", [
        "unlearn", "--method", "finetune", "--from", str(model), "--forget", f"random:{forget}",
        "--out", str(out / "unlearn"), *common,
    ], finetune_epochs * (train_n - forget) + args.epochs * (train_n - forget))  # fmt: skip
    evaluate = stage("evaluate", [
        "evaluate", "--from", str(model), "--forget", f"random:{forget}", *common,
    ], train_n + test_n)  # fmt: skip
    return [train, unlearn, evaluate]


# -- decode + transform throughput --------------------------------------------------------------
def _torchvision_loader(data: Path, prep: Preprocessing, rows: list[int], workers: int, bs: int):
    from torchvision import datasets
    from torchvision.transforms import InterpolationMode, v2

    transform = v2.Compose([
        v2.ToImage(),
        v2.Resize(prep.resize, interpolation=InterpolationMode(prep.interpolation), antialias=True),
        v2.CenterCrop(prep.size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(prep.mean), list(prep.std)),
    ])  # fmt: skip
    folder = datasets.ImageFolder(str(data), transform=transform)
    subset = torch.utils.data.Subset(folder, rows)
    return torch.utils.data.DataLoader(subset, batch_size=bs, num_workers=workers)


def _ours(data: Path, prep: Preprocessing, rows: list[int]) -> ArraySplit:
    files, _ = scan_folder(data)
    chosen = [files[i] for i in rows]
    samples = FileSamples(rows=None, prep=prep, divisor=255.0, root=data,
                          files=tuple(str(p.relative_to(data)) for p, _ in chosen),
                          channels=3, size=prep.size, resize=prep.resize)  # fmt: skip
    labels = torch.tensor([label for _, label in chosen])
    return ArraySplit(samples, labels, torch.arange(len(rows)))


def throughput(data: Path, args: argparse.Namespace, n: int) -> dict[str, Any]:
    """Images/s of decode + transform with ``--workers`` processes, both loaders, same files."""
    source = imagefolder_source(args.image_size)
    prep = Preprocessing.from_stats(source.mean, source.std, args.image_size, source.note)
    count = min(n, args.throughput_images)
    rows = sorted(np.random.default_rng(0).choice(n, count, replace=False).tolist())
    split = _ours(data, prep, rows)
    bs = args.batch_size

    def run_ours() -> float:
        start = time.perf_counter()
        seen = sum(len(x) for x, _, _ in iterate_batches(split, in_order(count, bs),
                                                          workers=args.workers))  # fmt: skip
        assert seen == count
        return count / (time.perf_counter() - start)

    def run_torchvision() -> float:
        start = time.perf_counter()
        seen = sum(len(x) for x, _ in _torchvision_loader(data, prep, rows, args.workers, bs))
        assert seen == count
        return count / (time.perf_counter() - start)

    # the same inputs, first: the comparison is of the same work
    ours_x = next(iterate_batches(split, in_order(count, bs)[:1]))[0]
    tv_x = next(iter(_torchvision_loader(data, prep, rows, 0, bs)))[0]
    max_diff = float((ours_x - tv_x).abs().max())
    ours, tv = [], []
    for _ in range(args.repeats):  # alternating, so drifting machine load hits both
        ours.append(run_ours())
        tv.append(run_torchvision())
    return {
        "workers": args.workers,
        "images": count,
        "batch_size": bs,
        "unlearnkit_images_per_s": round(max(ours), 1),
        "torchvision_images_per_s": round(max(tv), 1),
        "ratio": round(max(ours) / max(tv), 3),
        "all_unlearnkit": [round(v, 1) for v in ours],
        "all_torchvision": [round(v, 1) for v in tv],
        "max_abs_input_difference": max_diff,
    }


def memory_table(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """stage -> size -> the memory columns, for every size run."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for record in results:
        for s in record["stages"]:
            row = {k: s[k] for k in MEMORY_COLUMNS}
            table.setdefault(s["stage"], {})[str(record["files"])] = row
    return table


def summarise(results: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Memory columns per size, growth from the smallest to the largest size and the targets
    (footprint growth <= 300 MB at every stage; throughput ratio >= 0.9 at every size)."""
    sizes = [r["files"] for r in results]
    staged = all("stages" in r for r in results)
    summary: dict[str, Any] = {"sizes": sizes, "workers": workers}
    if staged:
        summary["memory_mb"] = memory_table(results)
    if staged and len(results) > 1:
        first, last = results[0]["stages"], results[-1]["stages"]
        growth: dict[str, dict[str, float]] = {}
        for key in ("peak_rss_mb", "footprint_mb"):
            growth[key] = {
                s["stage"]: round(b[key] - s[key], 1) for s, b in zip(first, last, strict=True)
            }
            summary[f"{key[:-3]}_growth_mb"] = {"from": sizes[0], "to": sizes[-1], **growth[key]}
        # the target: main RSS + the workers' summed USS (RSS double-counts shared pages)
        summary["rss_target_measure"] = "footprint_mb: stage peak RSS + workers' summed peak USS"
        summary["rss_target_met"] = max(growth["footprint_mb"].values()) <= 300
    summary["throughput_ratio"] = {str(r["files"]): r["throughput"]["ratio"] for r in results}
    summary["throughput_target_met"] = min(summary["throughput_ratio"].values()) >= 0.9
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10000,50000,100000", help="comma-separated file counts")
    ap.add_argument("--image-size", type=int, default=96, help="generated and model input px")
    ap.add_argument("--train-subset", type=int, default=5000,
                    help="images trained on (a stratified --subset of the pool)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--test-images",
        type=int,
        default=2000,
        help="test split size at every folder size (0: the loader's 20%%)",
    )
    ap.add_argument("--model", default="smallcnn")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256, help="throughput batch size")
    ap.add_argument("--throughput-images", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gen-procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/unlearnkit_data_scale"))
    ap.add_argument("--skip-stages", action="store_true", help="throughput only")
    ap.add_argument(
        "--summarise",
        action="store_true",
        help="only rebuild --out/summary.json from the n<SIZE>.json of --sizes there",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "data_scale")
    args = ap.parse_args()
    apply_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.summarise:
        missing = [
            str(args.out / f"n{n}.json") for n in sizes if not (args.out / f"n{n}.json").exists()
        ]
        if missing:
            raise SystemExit(
                f"error: --summarise needs {', '.join(missing)} (run those sizes first)"
            )
        done = [json.loads((args.out / f"n{n}.json").read_text()) for n in sizes]
        summary = summarise(done, args.workers)
        atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        return
    results = []
    for n in sizes:
        gen_start = time.perf_counter()
        data = generate(args.data_root / f"n{n}_{args.image_size}px", n, args.image_size,
                        args.gen_procs)  # fmt: skip
        record: dict[str, Any] = {
            "files": n,
            "image_px": args.image_size,
            "generate_s": round(time.perf_counter() - gen_start, 1),
            "train_subset": min(args.train_subset, int(0.8 * n)),
            "test_images": min(args.test_images, n // 5) if args.test_images else None,
            "note": "train/unlearn run on a stratified --subset of the pool; every stage loads "
            "the whole folder (train reads every file, the later stages stat them)",
            "machine_before": thread_report(),
        }
        work = args.data_root / f"runs_n{n}"
        if not args.skip_stages:
            record["stages"] = run_stages(data, work, args, n)
        record["throughput"] = throughput(data, args, n)
        record["machine_after"] = thread_report()
        atomic_write_text(args.out / f"n{n}.json", json.dumps(record, indent=1))
        results.append(record)
        print(json.dumps({k: record[k] for k in ("files", "throughput")}, indent=1))
    summary = summarise(results, args.workers)
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
