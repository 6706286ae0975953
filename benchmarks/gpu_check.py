"""GPU check in one script (at most ~5 minutes): the ``gpu`` tests, then one training epoch, one
NTK precompute and one S3T deletion timed on the CPU and on the GPU.

  PYTHONPATH=src python benchmarks/gpu_check.py        # -> results/gpu_check/gpu_check.json
  PYTHONPATH=src python benchmarks/gpu_check.py --samples 64 --ntk-samples 16 --out /tmp/gc

Without CUDA the GPU half is skipped and the JSON says so (the CPU timings still run, so the
script is checked end to end anywhere). Every workload goes through the library's own code
under a ``Runtime`` (``unlearnkit.runtime``), exactly as ``--device`` would run it:

- training epoch: resnet18 (CIFAR stem), every parameter trained, synthetic 32x32 images;
- NTK precompute: resnet18 in ``bn`` mode, A = sum J^T J and b over ``--ntk-samples`` samples
  (float32 GEMMs into a float64 accumulator, on the runtime's device);
- S3T deletion: a smallcnn ensemble on digits (2 shards x 3 slices x 2 sequences), one sample
  deleted (blocks switched off) and its shard retrained with deterministic kernels.

Times are wall seconds with the device synchronised; the GPU's first use (CUDA context,
cuDNN autotuning off) is paid in an untimed warm-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArraySplit
from unlearnkit.models import create_model, select_trainable
from unlearnkit.ntk.gram import accumulate_gram
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.runtime import Runtime, thread_report, using_runtime
from unlearnkit.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def run_gpu_tests(timeout: float) -> dict[str, Any]:
    """``pytest -m gpu tests/gpu`` in a child process; its last line is the summary."""
    cmd = [sys.executable, "-m", "pytest", "tests/gpu", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"summary": f"timed out after {timeout:.0f} s", "returncode": None}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return {
        "summary": lines[-1] if lines else proc.stderr.strip()[-300:],
        "returncode": proc.returncode,
        "seconds": round(time.perf_counter() - start, 1),
    }


def timed(runtime: Runtime, work: Callable[[], Any]) -> float:
    runtime.synchronize()
    start = time.perf_counter()
    work()
    runtime.synchronize()
    return time.perf_counter() - start


def synthetic(n: int, seed: int = 0) -> ArraySplit:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return ArraySplit(x, y, torch.arange(n))


def training_epoch(runtime: Runtime, data: ArraySplit) -> float:
    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, 32)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.05)
    with using_runtime(runtime), runtime.placed(model):
        warm = TrainConfig(epochs=1, batch_size=128, lr=0.05)
        train(model, data.subset(torch.arange(min(256, len(data)))), warm)  # untimed warm-up
        return timed(runtime, lambda: train(model, data, cfg))


def ntk_precompute(runtime: Runtime, data: ArraySplit) -> tuple[float, int]:
    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, 32)
    names = select_trainable(model, "bn")
    space = ParamSpace.from_model(model, names)
    with using_runtime(runtime), runtime.placed(model):
        accumulate_gram(model, space, data.x[:8], data.y[:8], 10, chunk_size=8)  # warm-up
        seconds = timed(
            runtime, lambda: accumulate_gram(model, space, data.x, data.y, 10, chunk_size=32)
        )
    return seconds, space.numel


def s3t_deletion(runtime: Runtime) -> dict[str, float]:
    from unlearnkit.exact import S3TConfig, S3TEnsemble
    from unlearnkit.exact.backbone import random_backbone
    from unlearnkit.exact.stack import StackSpec

    digits = load_dataset("digits", public_fraction=0.3)
    options = {"width": 32}
    backbone = random_backbone(StackSpec("smallcnn", 10, 1, 8, options), seed=5)
    config = S3TConfig(
        num_shards=2,
        num_slices=3,
        num_sequences=2,
        model_options=options,
        train=TrainConfig(epochs=2, lr=0.01, batch_size=32),
        retrain_policy="manual",
        lora_rank=8,
    )
    with using_runtime(runtime):
        start = time.perf_counter()
        ens = S3TEnsemble.train(digits.train, config, num_classes=10, backbone_state=backbone)
        trained_s = time.perf_counter() - start
        victim = ens.partition.members(0, ens.sequences[0][0])[0]
        delete_s = timed(runtime, lambda: ens.delete([victim]))
        retrain_s = timed(runtime, lambda: ens.retrain_shard(0))
        predict_s = timed(runtime, lambda: ens.predict_logits(digits.test.x))
    return {
        "ensemble_train_s": round(trained_s, 3),
        "delete_s": round(delete_s, 4),
        "retrain_shard_s": round(retrain_s, 3),
        "predict_test_s": round(predict_s, 4),
    }


def measure(runtime: Runtime, train_data: ArraySplit, ntk_data: ArraySplit) -> dict[str, Any]:
    epoch_s = training_epoch(runtime, train_data)
    ntk_s, p = ntk_precompute(runtime, ntk_data)
    return {
        **runtime.describe(),
        "training_epoch_s": round(epoch_s, 3),
        "training_samples_per_s": round(len(train_data) / epoch_s, 1),
        "ntk_precompute_s": round(ntk_s, 3),
        "ntk_ms_per_sample": round(1000 * ntk_s / len(ntk_data), 2),
        "ntk_parameters": p,
        "s3t": s3t_deletion(runtime),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check")
    parser.add_argument("--samples", type=int, default=2048, help="training-epoch samples")
    parser.add_argument("--ntk-samples", type=int, default=256, help="NTK precompute samples")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--skip-tests", action="store_true", help="timings only")
    parser.add_argument("--test-timeout", type=float, default=150.0)
    args = parser.parse_args()

    has_cuda = torch.cuda.is_available()
    result: dict[str, Any] = {"cuda_available": has_cuda, "torch": torch.__version__}
    if args.skip_tests:
        result["gpu_tests"] = "not run (--skip-tests)"
    elif has_cuda:
        result["gpu_tests"] = run_gpu_tests(args.test_timeout)
        print(f"gpu tests: {result['gpu_tests']['summary']}", flush=True)
    else:
        result["gpu_tests"] = "skipped: no CUDA on this machine"

    train_data, ntk_data = synthetic(args.samples), synthetic(args.ntk_samples, seed=1)
    cpu = Runtime.create("cpu", threads=args.threads).activate()
    result["machine"] = thread_report()
    result["cpu"] = measure(cpu, train_data, ntk_data)
    print(f"cpu: {json.dumps(result['cpu'])}", flush=True)
    if has_cuda:
        gpu = Runtime.create("cuda", "fp32", args.threads, deterministic=True).activate()
        result["gpu"] = measure(gpu, train_data, ntk_data)
        result["speedup"] = {
            key: round(result["cpu"][key] / result["gpu"][key], 2)
            for key in ("training_epoch_s", "ntk_precompute_s")
        }
        result["speedup"]["s3t_retrain_shard_s"] = round(
            result["cpu"]["s3t"]["retrain_shard_s"] / result["gpu"]["s3t"]["retrain_shard_s"], 2
        )
        print(f"gpu: {json.dumps(result['gpu'])}", flush=True)
    else:
        result["gpu"] = "skipped: no CUDA on this machine (CPU half only)"
        print("no CUDA here: the GPU tests and GPU timings were skipped", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
