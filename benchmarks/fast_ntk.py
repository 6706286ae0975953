"""Fast-NTK benchmark: quality on digits, scaling of the NTK state on synthetic 32x32 data, and
the precompute's time per sample against the cost model's limit.

  PYTHONPATH=src python benchmarks/fast_ntk.py            # every part -> results/fast_ntk/
  PYTHONPATH=src python benchmarks/fast_ntk.py --part scaling
  PYTHONPATH=src python benchmarks/fast_ntk.py --part precompute   # before/after, pool, Ray
  PYTHONPATH=src python benchmarks/fast_ntk.py --part precompute --precompute-samples 8 \
      --precompute-threads 1 --out /tmp/fp                        # a check that it runs

Quality: pretrain on a public split, train the PEFT set on D, forget (class 3 / random 10%),
compare retrain, finetune, fast_ntk (linearized and paper modes) and the full-model ntk where
it fits: accuracies, MIA, ToW, relearn epochs, time. Every method runs through the library's
``unlearnkit.experiment.run_seed`` (one trained model per seed shared by both forget sets) and
the tables and per-setting run directories come from ``unlearnkit.report``. fast_ntk goes
through its NTK state: one precompute per (model, seed), then each forget request is a
Woodbury downdate.
Scaling: resnet18 + bn on synthetic 32x32 images; precompute time, per-deletion latency for
k = 1, 10, 100, peak memory, and the retrain time measured in the same process. What cannot
be run on 2 CPU cores within the budget is extrapolated from measured throughput and labelled.
Precompute: smallcnn/bn and resnet18/bn, before (per-sample vmap(jacrev), float64 GEMMs) and
after (batched Jacobians, float32 GEMMs into float64; exact and pNTK), on 1 and 2 threads, a
local process pool and Ray; each time per sample also as a multiple of ``ntk.cost``'s limit.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import matplotlib
import torch

import unlearnkit.models.prompts  # noqa: F401 - registers vit_tiny_vpt / prompts
from unlearnkit.config import ExperimentConfig, build_config
from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import run_seed
from unlearnkit.experiment import summarise as summarise_runs
from unlearnkit.methods.base import register_method
from unlearnkit.methods.fast_ntk import FastNTK, FastNTKParams
from unlearnkit.metrics import measure_cost, peak_rss_mb
from unlearnkit.models import count_parameters, create_model, select_trainable
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.ntk import (
    NTKState,
    ParamSpace,
    PrecomputeCost,
    PrecomputeIncomplete,
    accumulate_gram,
    available_memory,
    compute_gram,
    delete_samples,
    estimate_memory,
    gemm_flops_per_s,
    precompute_cost,
    precompute_state,
    reference_jacobian,
)
from unlearnkit.ntk.precompute import ShardCache, remove_cache
from unlearnkit.ntk.update import plan_solver
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.report import summary_table, write_run
from unlearnkit.runtime import thread_report, using_threads
from unlearnkit.training import TrainConfig, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = Path("results/fast_ntk")
GIB = 2**30
MODELS = {  # (model, peft, model options, pretrain recipe, train-on-D recipe)
    "smallcnn": ("smallcnn", "bn", {}, TrainConfig(epochs=10), TrainConfig(epochs=15)),
    "resnet18": ("resnet18", "bn", {}, TrainConfig(epochs=4), TrainConfig(epochs=6)),
    # A ViT from scratch on 431 public 8x8 images needs many small SGD steps: with batch 64 and
    # lr 0.05 for 6 epochs (42 steps) it stayed at chance. Depth 2, batch 16, lr 0.01 for 150
    # epochs (4,050 steps, ~2 min on one core) reached ~80% test before the head reset.
    "vit_tiny": (
        "vit_tiny_vpt",
        "prompts",
        {"depth": 2, "num_prompts": 5},
        TrainConfig(epochs=150, lr=0.01, batch_size=16),
        TrainConfig(epochs=15, lr=0.05, batch_size=16),
    ),
}
FORGETS = ["class:3", "random:0.1"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- quality --------------------
class FastNTKPaperParams(FastNTKParams):
    mode: Literal["paper", "linearized"] = "paper"  # only the default differs


@register_method
class FastNTKPaper(FastNTK):
    """fast_ntk with ``mode=paper`` under its own name, so one ``run_seed`` runs both modes."""

    name = "fast_ntk_paper"
    Params = FastNTKPaperParams
    summary = "fast_ntk, the paper's weight update (benchmark alias)"
    in_default_run = False


def quality_cfg(
    key: str, forget: str, methods: list[str], state_path: Path | None = None
) -> ExperimentConfig:
    model, peft, opts, pre, train_on_d = MODELS[key]
    ntk_params = {"state_path": str(state_path)} if state_path is not None else {}
    return ExperimentConfig(
        model=model,
        peft=peft,
        model_options=opts,
        forget=forget,
        pretrain_config=pre,
        train=train_on_d,
        methods=methods,
        method_params={"fast_ntk": ntk_params, "fast_ntk_paper": ntk_params},
    )


def quality_seed(key: str, seed: int, full_ntk: bool, work: Path) -> list[dict[str, Any]]:
    """One trained model per (model, seed), one NTK state of D, then ``run_seed`` per forget set:
    every method through the library, fast_ntk as a downdate of the saved state."""
    cfg = quality_cfg(key, FORGETS[0], ["retrain"])
    bundle = load_bundle(cfg)
    log(f"quality {key} seed {seed}: training on D ({len(bundle.train)} samples)")
    original = train_original(cfg, bundle, seed)
    trainable, total = count_parameters(original.model, original.trainable)
    state_path = work / f"{key}-{seed}-ntk_state.safetensors"
    data = bundle.train.subset(torch.argsort(bundle.train.ids))  # D in id order, as fast_ntk has it
    with measure_cost() as pre_cost:  # the one-time cost, reported apart from each deletion
        precompute_state(
            original.model,
            original.trainable,
            original.initial_state,
            data,
            bundle.num_classes,
            lam=FastNTKParams().lam,
        ).save(state_path)
    rows: list[dict[str, Any]] = []
    for forget in FORGETS:
        methods = ["retrain", "finetune", "fast_ntk", "fast_ntk_paper"]
        if full_ntk and forget == FORGETS[0]:
            methods.append("ntk")
        cfg = quality_cfg(key, forget, methods, state_path)
        tag = f"  {key} {forget}"
        for row in run_seed(cfg, bundle, seed, lambda m, t=tag: log(f"{t}: {m}"), original):
            rows.append(
                {
                    "model": key,
                    "forget": forget,
                    "peft": cfg.peft,
                    "trainable_params": trainable,
                    "total_params": total,
                    "ntk_precompute_s": pre_cost.time_s,
                    **row,
                }
            )
    state_path.unlink(missing_ok=True)
    return rows


def full_ntk_fits(key: str) -> tuple[bool, str]:
    """The full-model dual solve's memory estimate on digits vs this machine."""
    model, _, opts, _, _ = MODELS[key]
    net = create_model(model, 10, 1, 8, **opts)
    p = sum(q.numel() for q in net.parameters())
    est = estimate_memory("dual", p, 1007 * 10, 10, 32)  # |D| of digits after the public split
    avail = available_memory()
    return est.bytes < 0.8 * avail, f"P={p:,}: dual needs {est.gib:.1f} GiB, {avail / GIB:.1f} free"


# ---------------------------------------------------------------- scaling --------------------
def peak_rss_gib() -> float:
    return peak_rss_mb() / 1024


def epoch_seconds(model, data, names, reps: int = 1) -> float:
    """Wall time of one real training epoch (batch 64) of the PEFT set on ``data``."""
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=64, seed=0)
    t = time.perf_counter()
    for _ in range(reps):
        train(model, data, cfg, names)
    return (time.perf_counter() - t) / reps


def full_ntk_refusal(total: int, n: int, chunk: int) -> str | None:
    """The full-model NTK planner's answer at N samples: None if the dual form fits, else its
    refusal (raised before any work)."""
    try:
        plan_solver("dual", total, n, 10, chunk, None)
        return None
    except UnlearnkitError as exc:
        return str(exc)


def full_ntk_columns(sc: dict[str, Any]) -> None:
    """Memory estimates and refusals of the full-model NTK at each N (pure estimates)."""
    total, chunk = sc["total_params"], sc["chunk"]
    for row in sc["rows"]:
        n = row["N"]
        row["full_ntk_dual_gib"] = estimate_memory("dual", total, n * 10, 10, chunk).gib
        row["full_ntk_primal_gib"] = estimate_memory("primal", total, n * 10, 10, chunk).gib
        row["full_ntk_refused"] = full_ntk_refusal(total, n, chunk)
    fit_n = 0
    while full_ntk_refusal(total, fit_n + 1, 1) is None:
        fit_n += 1
    sc["full_ntk_max_n"] = fit_n
    sc["available_gib"] = available_memory() / GIB


def synthetic_bn_setup(arch: str, n: int) -> tuple[Any, ...]:
    """The scaling runs' set-up: ``n`` synthetic 32x32 samples and ``arch`` (seed 0) with its
    BN + head set trainable; (bundle, model, names, space, P, total params, w0)."""
    torch.manual_seed(0)
    bundle = load_dataset("synthetic", n_train=n, n_test=10, image_size=32, channels=3)
    return bn_model_setup(bundle, arch)


def dataset_bn_setup(dataset: str, arch: str, n: int) -> tuple[Any, ...]:
    """The same tuple on the first ``n`` samples of D of a real data set: its preset split
    (Fashion-MNIST: 42,000 of 60,000 after the public 30%), its image size and channels, the
    model at random init. Ids are renumbered 0..n-1 in that order, as the state expects."""
    bundle = load_bundle(build_config(dataset=dataset, model=arch, peft="bn"))
    take = bundle.train.subset(torch.arange(min(n, len(bundle.train))))
    bundle.train = ArraySplit(take.x, take.y, torch.arange(len(take)))
    return bn_model_setup(bundle, arch)


def bn_setup(dataset: str, arch: str, n: int) -> tuple[Any, ...]:
    """``synthetic_bn_setup`` for "synthetic", else ``dataset_bn_setup`` on that set's D."""
    if dataset == "synthetic":
        return synthetic_bn_setup(arch, n)
    return dataset_bn_setup(dataset, arch, n)


def bn_model_setup(bundle: Any, arch: str) -> tuple[Any, ...]:
    """``arch`` at random init (seed 0) for ``bundle``'s images, BN + head trainable."""
    torch.manual_seed(0)
    model = create_model(arch, bundle.num_classes, bundle.in_chans, bundle.image_size)
    names = select_trainable(model, "bn")
    space = ParamSpace.from_model(model, names)
    p, total = count_parameters(model, names)
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return bundle, model, names, space, p, total, w0


def data_label(bundle: Any, dataset: str) -> str:
    """How the largest-N report names its data: the set and the image size."""
    size = f"{bundle.image_size}x{bundle.image_size}"
    return f"synthetic {size}" if dataset == "synthetic" else f"{dataset} D, {size}"


def scaling(
    sizes: list[int],
    recipe_epochs: int,
    epoch_sizes: list[int],
    chunk: int = 32,
    arch: str = "resnet18",
) -> dict[str, Any]:
    """Measured side by side in this process: real retrain epochs (N in ``epoch_sizes``), the
    Jacobian+Gram throughput and the one-time factorisation, and per-deletion latency on a
    state over N ids of an N-sample synthetic training set."""
    nmax = max(sizes)
    bundle, model, names, space, p, total, w0 = synthetic_bn_setup(arch, nmax)
    log(f"scaling: {arch} bn P={p:,} of {total:,}; synthetic N up to {nmax:,}")
    # 1. retrain: real epochs on this machine (one warm-up epoch on 64 samples first)
    probe = copy.deepcopy(model)
    epoch_seconds(probe, bundle.train.subset(torch.arange(64)), names)
    epochs_measured = {}
    for n in epoch_sizes:
        epochs_measured[n] = epoch_seconds(probe, bundle.train.subset(torch.arange(n)), names)
        log(f"  one retrain epoch on N={n:,}: {epochs_measured[n]:.1f}s")
    biggest = max(epoch_sizes)
    train_s_per_sample = epochs_measured[biggest] / biggest
    # 2. precompute throughput: Jacobian + Gram accumulation over the first 128 samples
    # (they include every sample deleted below, so A - U^T U stays a valid Gram)
    x, y = bundle.train.x[:128], bundle.train.y[:128]
    t = time.perf_counter()
    stats = accumulate_gram(model, space, x, y, 10, w0, chunk)
    jac_s_per_sample = (time.perf_counter() - t) / len(x)
    log(f"  jacobian+gram {jac_s_per_sample:.3f} s/sample")
    # 3. factorisation (once, independent of N)
    t = time.perf_counter()
    base = NTKState.from_gram(
        list(space.names),
        [list(s) for s in space.shapes],
        stats.gram,
        stats.rhs,
        0.1,
        10,
        torch.arange(len(x)),
        {},
    )
    inverse_s = time.perf_counter() - t
    log(f"  inverse of A + lambda I ({p}x{p}) in {inverse_s:.1f}s")
    path = Path(tempfile.mkdtemp()) / "ntk_state.safetensors"
    t = time.perf_counter()
    base.save(path)
    save_s = time.perf_counter() - t
    state_file_gib = path.stat().st_size / GIB
    path.unlink()
    log(f"  state file {state_file_gib:.2f} GiB written in {save_s:.1f}s")
    rows = []
    for n in sizes:
        state = NTKState(  # a fresh copy per N: deletions update the state in place
            base.names,
            base.shapes,
            base.lam,
            10,
            base.gram.clone(),
            base.rhs.clone(),
            base.inverse.clone(),
            torch.arange(n),
            torch.ones(n, dtype=torch.bool),
            base.solution_full,
            {},
        )
        data_n = bundle.train.subset(torch.arange(n))
        measured = n in epochs_measured
        epoch_s = epochs_measured[n] if measured else n * train_s_per_sample
        row: dict[str, Any] = {
            "N": n,
            "P": p,
            "total_params": total,
            "precompute_s_extrapolated": n * jac_s_per_sample + inverse_s,
            "retrain_epoch_s": epoch_s,
            "retrain_epoch_measured": measured,
            "retrain_s": epoch_s * recipe_epochs,
            "latency_s": {},
            "deletion_peak_extra_mib": {},
        }
        next_id = 0
        for k in (1, 10, 100):
            if k == 100 and n not in (sizes[0], sizes[-1]):
                continue
            ids = torch.arange(next_id, next_id + k)
            next_id += k
            with measure_cost() as cost:
                delete_samples(model, state, w0, data_n.select_ids(ids))
            row["latency_s"][str(k)] = cost.time_s
            row["deletion_peak_extra_mib"][str(k)] = cost.peak_mem_mb
            assert int((~state.alive).sum()) == next_id
            log(f"  N={n:,} k={k}: {cost.time_s:.2f}s")
        row["peak_rss_gib"] = peak_rss_gib()
        rows.append(row)
        del state, data_n
    out = {
        "model": arch,
        "peft": "bn",
        "P": p,
        "total_params": total,
        "image_size": 32,
        "recipe_epochs": recipe_epochs,
        "chunk": chunk,
        "retrain_epochs_measured": {str(k): v for k, v in epochs_measured.items()},
        "train_s_per_sample": train_s_per_sample,
        "jac_s_per_sample": jac_s_per_sample,
        "inverse_s": inverse_s,
        "state_save_s": save_s,
        "state_file_gib": state_file_gib,
        "state_gib": 3 * p * p * 8 / GIB,
        "available_gib": available_memory() / GIB,
        "rows": rows,
        "notes": (
            f"Measured in this run: real retrain epochs at N in {sorted(epochs_measured)} "
            "(larger N: that epoch's s/sample x N, marked *), the Jacobian+Gram throughput on "
            "128 samples, the factorisation, the state write, and every deletion latency. "
            "The one-time precompute at N is extrapolated (N x throughput + factorisation): a "
            f"full pass takes {jac_s_per_sample:.2f} s/sample here, i.e. "
            f"{nmax * jac_s_per_sample / 3600:.1f} h at N = {nmax:,} on one core. "
            "Deletions run on a state over the N ids of an N-sample training set whose "
            "P x P matrices come from the 128 measured samples; a deletion's cost (k Jacobians "
            "+ a rank-kC downdate of P x P matrices) does not depend on where A came from. "
            "Latency excludes rewriting the state file (state_save_s, reported separately)."
        ),
    }
    full_ntk_columns(out)
    return out


# ---------------------------------------------------------------- largest N in a budget -----
def largest_n(
    budget_s: float,
    n_max: int,
    workers: int,
    threads: int,
    shard_size: int,
    recipe_epochs: int,
    epoch_n: int,
    chunk: int = 64,
    arch: str = "resnet18",
    dataset: str = "synthetic",
) -> dict[str, Any]:
    """Run the exact precompute (in this process on ``threads`` threads if ``workers`` is 1,
    else on ``workers`` one-thread processes) on up to ``n_max`` samples (synthetic 32x32, or
    D of a real ``dataset``) for ``budget_s`` seconds; the in-order prefix finished within the
    budget is the largest N. Then factorise it and time the deletion stream on that state."""
    bundle, model, names, space, p, total, w0 = bn_setup(dataset, arch, n_max)
    n_max = len(bundle.train)
    data = data_label(bundle, dataset)
    where = f"{threads} threads in-process" if workers == 1 else f"{workers} one-thread workers"
    log(f"largest N: {arch} bn P={p:,}, {data}; budget {budget_s:.0f}s, {where}, <= {n_max:,}")
    cache = Path(tempfile.mkdtemp(prefix="ntk-largest-")) / "state.parts"
    with using_threads(threads if workers == 1 else 1):
        load_before = thread_report()
        rate = gemm_flops_per_s()
        cost = precompute_cost(model, names, bundle.train.x[:4], 10, w0, gemm_rate=rate)
        t = time.perf_counter()
        try:
            compute_gram(
                model, names, w0, bundle.train, 10,
                chunk_size=chunk, shard_size=shard_size, workers=workers, executor="local",
                cache_dir=cache, time_budget_s=budget_s, checkpoint_s=600, progress=True,
            )  # fmt: skip
            samples, prefix_s = n_max, time.perf_counter() - t
        except PrecomputeIncomplete as exc:
            samples, prefix_s = exc.samples, exc.elapsed_s
        call_s = time.perf_counter() - t
    found = ShardCache(cache, {}).load_prefix()
    if found is None or found[1].count != samples:
        raise SystemExit(f"no usable prefix: {samples} samples summed in the budget")
    stats = found[1]
    remove_cache(cache)
    log(f"  {samples:,} samples summed within {prefix_s:.0f}s (call returned after {call_s:.0f}s)")
    with using_threads(2):
        t = time.perf_counter()
        state = NTKState.from_gram(
            list(space.names), [list(s) for s in space.shapes], stats.gram, stats.rhs,
            0.1, 10, torch.arange(samples), {},
        )  # fmt: skip
        inverse_s = time.perf_counter() - t
        del stats, found
        log(f"  factorisation {inverse_s:.0f}s")
        data_n = bundle.train.subset(torch.arange(samples))
        latency, peak, next_id = {}, {}, 0
        for k in (1, 10, 100):
            ids = torch.arange(next_id, next_id + k)
            next_id += k
            with measure_cost() as spent:  # (not ``cost``: that is the precompute's limit)
                delete_samples(model, state, w0, data_n.select_ids(ids))
            latency[str(k)], peak[str(k)] = spent.time_s, spent.peak_mem_mb
            assert int((~state.alive).sum()) == next_id
            log(f"  delete k={k}: {spent.time_s:.2f}s")
        probe = copy.deepcopy(model)
        epoch_seconds(probe, bundle.train.subset(torch.arange(64)), names)  # warm-up
        epoch_s = epoch_seconds(probe, bundle.train.subset(torch.arange(epoch_n)), names)
    per_sample = epoch_s / epoch_n
    retrain_s = per_sample * samples * recipe_epochs
    log(f"  one epoch on {epoch_n:,}: {epoch_s:.0f}s -> retrain at N={samples:,}: {retrain_s:.0f}s")
    return {
        "model": arch,
        "peft": "bn",
        "data": data,
        "n_available": n_max,
        "P": p,
        "total_params": total,
        "budget_s": budget_s,
        "workers": workers,
        "threads": threads if workers == 1 else 1,
        "shard_size": shard_size,
        "chunk": chunk,
        "N": samples,
        "prefix_done_s": prefix_s,
        "precompute_call_s": call_s,
        "s_per_sample": prefix_s / max(samples, 1),
        "limit_s_per_sample": cost.limit_s_per_sample,
        "x_limit": cost.multiple(prefix_s / max(samples, 1)),
        "gemm_flops_per_s": rate,
        "inverse_s": inverse_s,
        "latency_s": latency,
        "deletion_peak_extra_mib": peak,
        "latency_share_of_retrain": {k: v / retrain_s for k, v in latency.items()},
        "retrain_epoch_n": epoch_n,
        "retrain_epoch_s": epoch_s,
        "recipe_epochs": recipe_epochs,
        "retrain_s": retrain_s,
        "peak_rss_gib": peak_rss_gib(),
        "machine_at_start": load_before,
        "notes": (
            f"Measured: the exact precompute of the first N samples ({data}, random "
            f"init) finished within the {budget_s:.0f} s budget on {where} (shard cache on, as "
            "a user runs it), the factorisation of that state and "
            "the deletions k = 1, 10, 100 on it (2 threads). Retrain = one measured epoch on "
            f"{epoch_n:,} samples, scaled linearly to N, x {recipe_epochs} recipe epochs "
            "(extrapolated; an epoch at N does not fit the session)."
        ),
    }


def retrain_epoch(big: dict[str, Any], dataset: str, epoch_n: int, threads: int) -> None:
    """Time one real training epoch of the BN + head set on the first ``epoch_n`` samples of
    the largest-N run's data (all N when ``epoch_n`` reaches it) and rebase that run's retrain
    time and deletion shares on it, in place; a separate part because the hour's run timed
    only a small epoch."""
    n = min(epoch_n, big["N"])
    bundle, model, names, *_ = bn_setup(dataset, big["model"], n)
    with using_threads(threads):
        epoch_seconds(copy.deepcopy(model), bundle.train.subset(torch.arange(64)), names)
        epoch_s = epoch_seconds(model, bundle.train, names)
    big["retrain_epoch_n"], big["retrain_epoch_s"] = n, epoch_s
    big["retrain_s"] = epoch_s / n * big["N"] * big["recipe_epochs"]
    big["latency_share_of_retrain"] = {k: v / big["retrain_s"] for k, v in big["latency_s"].items()}
    scaled = "" if n == big["N"] else f", scaled linearly from {n:,} samples to N"
    big["notes"] = big["notes"].split(" Retrain = ")[0] + (
        f" Retrain = one epoch measured afterwards on {threads} threads{scaled}, x "
        f"{big['recipe_epochs']} recipe epochs (the later epochs assumed to cost the same)."
    )
    log(
        f"  one epoch on {n:,}: {epoch_s:.0f}s -> retrain at N={big['N']:,}: "
        f"{big['retrain_s']:.0f}s"
    )


# ---------------------------------------------------------------- precompute -----------------
PRECOMPUTE_MODELS = {"smallcnn": ("smallcnn", 1, 8), "resnet18": ("resnet18", 3, 32)}


def gram_before(model, space: ParamSpace, x, y, w0, chunk: int) -> None:
    """The precompute as it was: per-sample vmap(jacrev) and float64 GEMMs (the baseline)."""
    p = space.numel
    gram = torch.zeros(p, p, dtype=torch.float64)
    rhs = torch.zeros(p, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        jac, f0 = reference_jacobian(model, space, x[start : start + chunk], w0)
        u = jac.reshape(-1, p).double()
        r = (torch.nn.functional.one_hot(y[start : start + chunk], 10) - f0).reshape(-1)
        gram.addmm_(u.T, u)
        rhs.add_(u.T @ r.double())


def timed(fn, *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def precompute_model(
    key: str, samples: int, threads_list: list[int], workers: int, executors: list[str], chunk: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of ``precompute_bench`` for one model."""
    arch, chans, size = PRECOMPUTE_MODELS[key]
    torch.manual_seed(0)
    train_d = load_dataset(
        "synthetic", n_train=samples, n_test=10, image_size=size, channels=chans
    ).train
    model = create_model(arch, 10, chans, size)
    names = select_trainable(model, "bn")
    space = ParamSpace.from_model(model, names)
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log(f"precompute {key}: P={space.numel:,}, {samples} samples")
    rows: list[dict[str, Any]] = []
    costs: dict[str, Any] = {}

    def add(path: str, seconds: float, per: float, cost: PrecomputeCost, **extra: Any) -> None:
        rows.append(
            {
                "model": key,
                "P": space.numel,
                "path": path,
                "samples": samples,
                "seconds": seconds,
                "s_per_sample": per,
                "samples_per_s": 1.0 / per if per > 0 else None,
                "limit_s_per_sample": cost.limit_s_per_sample,
                "x_limit": cost.multiple(per),
                **extra,
            }
        )
        log(f"  {path:26s}: {per:.4f} s/sample (x{cost.multiple(per):.1f} the limit)")

    for threads in threads_list:
        with using_threads(threads):
            rate = gemm_flops_per_s()
            cost = precompute_cost(model, names, train_d.x[:4], 10, w0, gemm_rate=rate)
            pcost = precompute_cost(model, names, train_d.x[:4], 10, w0, "pntk", gemm_rate=rate)
            costs[str(threads)] = {"exact": cost.as_dict(), "pntk": pcost.as_dict()}
            t = timed(gram_before, model, space, train_d.x, train_d.y, w0, chunk)
            add(f"before, {threads} thr", t, t / samples, cost, threads=threads)
            for kernel, c in (("exact", cost), ("pntk", pcost)):
                t = timed(
                    compute_gram, model, names, w0, train_d, 10, kernel=kernel, chunk_size=chunk
                )
                add(f"after {kernel}, {threads} thr", t, t / samples, c, threads=threads)
    one = PrecomputeCost(
        **{
            k: v
            for k, v in costs[str(min(threads_list))]["exact"].items()
            if k in PRECOMPUTE_FIELDS
        }
    )
    small = train_d.subset(torch.arange(min(samples, workers * chunk)))
    for executor in executors:
        opts = {"chunk_size": chunk, "workers": workers, "executor": executor}
        try:
            t_small = timed(compute_gram, model, names, w0, small, 10, **opts)
            t_full = timed(compute_gram, model, names, w0, train_d, 10, **opts)
        except UnlearnkitError as exc:
            log(f"  {executor}: skipped ({exc})")
            continue
        extra = samples - len(small)
        marginal = (t_full - t_small) / extra if extra > 0 else t_full / samples
        add(
            f"after exact, {workers} x {executor}",
            t_full,
            marginal,
            one,  # the one-thread limit; W one-thread workers: divide it by W
            threads=1,
            workers=workers,
            executor=executor,
            startup_s=max(0.0, t_small - marginal * len(small)),
            x_limit_of_w_threads=workers * one.multiple(marginal),
        )
    return rows, costs


PRECOMPUTE_FIELDS = set(PrecomputeCost.__dataclass_fields__)


def precompute_bench(
    models: list[str],
    samples: int,
    threads_list: list[int],
    workers: int,
    executors: list[str],
    chunk: int = 32,
) -> dict[str, Any]:
    """Time per sample of the one-time state precompute (Jacobians + Gram of D; not the
    factorisation), before (per-sample reference, float64 GEMMs) and after (batched Jacobians,
    float32 GEMMs into float64), on each thread count, a local process pool and Ray, each against
    the cost model's limit (FLOPs per sample / float32 GEMM rate measured on the threads used).
    Pool and Ray rows are marginal, (t(N) - t(n0)) / (N - n0) with n0 = one chunk per worker, so
    process / cluster start-up is reported apart (``startup_s``)."""
    rows: list[dict[str, Any]] = []
    costs: dict[str, Any] = {}
    for key in models:
        model_rows, costs[key] = precompute_model(
            key, samples, threads_list, workers, executors, chunk
        )
        rows += model_rows
    return {
        "samples": samples,
        "chunk": chunk,
        "threads": threads_list,
        "workers": workers,
        "cost_model": costs,
        "rows": rows,
        "machine": thread_report(),
    }


# ---------------------------------------------------------------- report ---------------------
def settings(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["model"], r["forget"]) for r in rows if "acc" in r))


def setting_results(rows: list[dict[str, Any]], model: str, forget: str) -> dict[str, Any]:
    """One (model, forget) comparison in the shape of ``run_experiment``'s results document, so
    ``unlearnkit.report`` writes its run directory and tables."""
    runs = [r for r in rows if (r["model"], r["forget"]) == (model, forget) and "acc" in r]
    first = runs[0]
    return {
        "dataset": "digits",
        "model": model,
        "forget": forget,
        "seeds": sorted({r["seed"] for r in runs}),
        "peft": first["peft"],
        "trainable_params": first["trainable_params"],
        "total_params": first["total_params"],
        "runs": runs,
        "summary": summarise_runs(runs),
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, forget, method): the library's per-method summary, plus how many seeds did
    not relearn within the maximum (the mean is over those that did)."""
    out = []
    for model, forget in settings(rows):
        doc = setting_results(rows, model, forget)
        for method, entry in doc["summary"].items():
            censored = sum(
                r["relearn_epochs"] is None for r in doc["runs"] if r["method"] == method
            )
            out.append(
                {
                    "model": model,
                    "forget_spec": forget,
                    "method": method,
                    **entry,
                    "relearn_censored": censored,
                }
            )
    return out


def write_settings(doc: dict[str, Any]) -> list[Path]:
    """results/fast_ntk/quality/<model>-<forget>/: results.json, report.md and figures."""
    written = []
    for model, forget in settings(doc.get("quality", [])):
        slug = forget.replace(":", "").replace(".", "")
        res = setting_results(doc["quality"], model, forget)
        written.append(write_run(res, OUT / "quality" / f"{model}-{slug}"))
    return written


def figures(doc: dict[str, Any]) -> None:
    sc = doc.get("scaling")
    if not sc:
        return
    ns = [r["N"] for r in sc["rows"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in ("1", "10", "100"):
        pts = [(r["N"], r["latency_s"][k]) for r in sc["rows"] if k in r["latency_s"]]
        ax.plot(*zip(*pts, strict=True), "o-", label=f"fast_ntk deletion, k={k}")
    ax.plot(
        ns,
        [r["retrain_s"] for r in sc["rows"]],
        "k--",
        label="retrain (measured epoch x recipe epochs)",
    )
    ax.plot(ns, [0.01 * r["retrain_s"] for r in sc["rows"]], "k:", label="1% of retrain")
    ax.plot(
        ns,
        [r["precompute_s_extrapolated"] for r in sc["rows"]],
        "s-",
        color="grey",
        label="one-time precompute (extrapolated)",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training set size N",
        ylabel="seconds",
        title=f"{sc['model']} + bn, 32x32, 1 CPU thread",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "latency_vs_n.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ns, [r["peak_rss_gib"] for r in sc["rows"]], "o-", label="fast_ntk peak RSS")
    ax.plot(
        ns,
        [r["full_ntk_dual_gib"] for r in sc["rows"]],
        "s--",
        label="full-model NTK, dual (estimate)",
    )
    ax.axhline(sc["available_gib"], color="r", ls=":", label="available on this machine")
    ax.set(xscale="log", yscale="log", xlabel="training set size N", ylabel="GiB", title="memory")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "memory_vs_n.png", dpi=120)
    plt.close("all")


def fmt(v: Any, spec: str = ".1f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def report(doc: dict[str, Any]) -> str:
    lines = ["# Fast-NTK benchmark", "", f"Machine: {doc['machine']}", ""]
    if doc.get("quality"):
        lines += [
            "## Quality (digits, mean over seeds)",
            "",
            "Tables by `unlearnkit.report` (the same as `unlearnkit unlearn` writes); each "
            "setting's run directory with figures is under `quality/`. fast_ntk time = one "
            "deletion from the saved NTK state of D.",
        ]
        for model, forget in settings(doc["quality"]):
            res = setting_results(doc["quality"], model, forget)
            pres = [r["ntk_precompute_s"] for r in res["runs"] if r.get("ntk_precompute_s")]
            pre = sum(pres) / len(pres) if pres else None
            censored = [
                f"{s['method']} {s['relearn_censored']} of {s['n_seeds']}"
                for s in doc["quality_summary"]
                if (s["model"], s["forget_spec"]) == (model, forget) and s["relearn_censored"]
            ]
            lines += [
                "",
                f"### {model} + {res['peft']}, forget `{forget}`, seeds {res['seeds']}",
                "",
                f"{res['trainable_params']:,} of {res['total_params']:,} parameters trainable"
                + (f"; NTK state precompute {pre:.1f} s (once per seed, mean)." if pre else "."),
                "",
                summary_table(res),
            ]
            if censored:
                lines += ["", "Not relearned within the maximum epochs: " + ", ".join(censored)]
        for model, why in doc.get("full_ntk_skipped", {}).items():
            lines.append(f"\nfull-model ntk on {model}: {why}")
        lines.append("")
    big = doc.get("largest")
    if big:
        lat = big["latency_s"]
        lines += [
            f"## The largest N in {big['budget_s'] / 3600:.1f} h ({big['model']} + bn, "
            f"{big.get('data', 'synthetic 32x32')}, exact kernel)",
            "",
            f"The exact precompute of the first N = {big['N']:,} samples finished within the "
            f"budget ({big['prefix_done_s']:.0f} s; {big['s_per_sample']:.3f} s/sample, "
            f"x{big['x_limit']:.2f} the cost model's limit of "
            f"{big['limit_s_per_sample']:.3f} s/sample at "
            f"{big['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s), P = {big['P']:,}, shards of "
            f"{big['shard_size']:,}, {big['threads']} thread(s), {big['workers']} worker(s). "
            f"Factorisation of that state: {big['inverse_s']:.0f} s.",
            "",
            "| k deleted | seconds | share of retrain | extra peak MiB |",
            "|---|---|---|---|",
        ]
        peaks = big.get("deletion_peak_extra_mib", {})
        for k in ("1", "10", "100"):
            lines.append(
                f"| {k} | {lat[k]:.2f} | {100 * big['latency_share_of_retrain'][k]:.3f}% | "
                f"{fmt(peaks.get(k), '.0f')} |"
            )
        scale = "" if big["retrain_epoch_n"] == big["N"] else f" x N / {big['retrain_epoch_n']:,}"
        lines += [
            "",
            f"Retrain: one measured epoch on {big['retrain_epoch_n']:,} samples took "
            f"{big['retrain_epoch_s']:.0f} s;{scale} x {big['recipe_epochs']} epochs = "
            f"{big['retrain_s']:,.0f} s (extrapolated). Peak RSS "
            f"{fmt(big.get('peak_rss_gib'))} GiB. {big['notes']}",
            "",
        ]
    sc = doc.get("scaling")
    if sc:
        lines += [
            f"## Scaling ({sc['model']} + bn, synthetic 32x32)",
            "",
            f"P = {sc['P']:,} trainable of {sc['total_params']:,}; state (A, H, temp) "
            f"{sc['state_gib']:.1f} GiB in memory, {sc['state_file_gib']:.1f} GiB on disk "
            f"(written in {sc['state_save_s']:.1f} s); factorisation {sc['inverse_s']:.0f} s "
            f"(once); Jacobian+Gram {sc['jac_s_per_sample']:.3f} s/sample; retrain = one "
            f"epoch x {sc['recipe_epochs']} epochs.",
            "",
            "| N | precompute s (extrap.) | retrain epoch s | retrain s | k=1 s | k=10 s | "
            "k=100 s | k=1 / retrain | k=10 / retrain | k=100 / retrain | peak RSS GiB | "
            "full NTK dual GiB (est.) | full NTK |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sc["rows"]:
            lat = r["latency_s"]
            star = "" if r["retrain_epoch_measured"] else "*"
            ratios = [
                f"{100 * lat[k] / r['retrain_s']:.3f}%" if k in lat else "-"
                for k in ("1", "10", "100")
            ]
            lines.append(
                f"| {r['N']:,} | {r['precompute_s_extrapolated']:,.0f} | "
                f"{r['retrain_epoch_s']:.1f}{star} | {r['retrain_s']:,.0f}{star} | "
                f"{lat['1']:.2f} | {lat['10']:.2f} | {fmt(lat.get('100'), '.1f')} | "
                f"{' | '.join(ratios)} | {r['peak_rss_gib']:.1f} | "
                f"{r['full_ntk_dual_gib']:,.0f} | "
                f"{'refused' if r['full_ntk_refused'] else 'fits'} |"
            )
        lines += [
            "",
            "\\* extrapolated from the largest measured epoch (s/sample x N).",
            "",
            f"Full-model NTK ({sc['total_params']:,} parameters) fits this machine's "
            f"{sc['available_gib']:.1f} GiB free up to N = {sc['full_ntk_max_n']} samples "
            "(dual form, Jacobian chunk 1). "
            + next(
                (
                    f"At N = {r['N']:,} the planner refuses before any work: "
                    f'"{r["full_ntk_refused"]}"'
                    for r in sc["rows"]
                    if r["full_ntk_refused"]
                ),
                "It fits at every N measured here.",
            ),
            "",
            sc["notes"],
            "",
            "![latency](latency_vs_n.png) ![memory](memory_vs_n.png)",
        ]
    pc = doc.get("precompute")
    if pc:
        lines += [
            "",
            "## Precompute: time per sample of the NTK state (Jacobians + Gram of D)",
            "",
            f"{pc['samples']} synthetic samples per model, chunk {pc['chunk']}; the "
            "factorisation (once, P^3) is not included. Limit = FLOPs per sample (model part "
            "by FlopCounterMode + C P (P + 1) for the Gram's upper triangle; P (P + 1) for the "
            "pNTK) / the float32 GEMM "
            "rate measured on the same threads. Pool / Ray rows: marginal s/sample "
            f"with {pc['workers']} one-thread workers (start-up apart); their 'x limit' is "
            "against one thread, so W workers at the machine's rate would read 1/W.",
            "",
            "| model | P | threads | model GFLOP | Gram GFLOP | GEMM GFLOP/s | limit s |",
            "|---|---|---|---|---|---|---|",
        ]
        for model, by_threads in pc["cost_model"].items():
            for threads, both in by_threads.items():
                c = both["exact"]
                lines.append(
                    f"| {model} | {c['p']:,} | {threads} | {c['model_flops'] / 1e9:.3f} | "
                    f"{c['gram_flops'] / 1e9:.3f} | {c['gemm_flops_per_s'] / 1e9:.1f} | "
                    f"{c['limit_s_per_sample']:.3g} |"
                )
        lines += [
            "",
            "| model | path | s/sample | samples/s | limit s/sample | x limit | start-up s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in pc["rows"]:
            lines.append(
                f"| {r['model']} | {r['path']} | {r['s_per_sample']:.3g} | "
                f"{fmt(r['samples_per_s'])} | {r['limit_s_per_sample']:.3g} | "
                f"{r['x_limit']:.1f} | {fmt(r.get('startup_s'))} |"
            )
        lines += ["", f"Machine during this part: {pc['machine']}"]
    if doc.get("targets"):
        lines += ["", "## Targets", ""] + [f"- {t}" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


def targets(doc: dict[str, Any]) -> list[str]:
    out = []
    big = doc.get("largest")
    if big:
        out.append(
            f"largest N with the exact precompute finished in {big['budget_s']:.0f} s: "
            f"{big['N']:,} (measured)"
        )
        for k, share in big["latency_share_of_retrain"].items():
            out.append(
                f"deletion k={k} at N={big['N']:,}: {100 * share:.3f}% of retrain "
                f"({'met' if share <= 0.01 else 'MISSED'}; target <= 1%)"
            )
    sc = doc.get("scaling")
    if sc:
        rows = {r["N"]: r for r in sc["rows"]}
        last = rows[max(rows)]
        picks = {n: rows[n] for n in (min(rows), 1000, max(rows)) if n in rows}
        for r in picks.values():
            for k, lat in r["latency_s"].items():
                ratio = lat / r["retrain_s"]
                out.append(
                    f"latency k={k} at N={r['N']:,}: {100 * ratio:.3f}% of retrain "
                    f"({'met' if ratio <= 0.01 else 'MISSED'}; target <= 1%)"
                )
        for base in [picks[n] for n in picks if n != max(rows)]:
            for k in base["latency_s"]:
                if k in last["latency_s"]:
                    g = last["latency_s"][k] / base["latency_s"][k]
                    out.append(
                        f"latency growth N={base['N']:,} -> {last['N']:,}, k={k}: {g:.2f}x "
                        f"({'met' if g < 2 else 'MISSED'}; target < 2x)"
                    )
        out.append(
            f"peak memory (process RSS) at N={last['N']:,}: {last['peak_rss_gib']:.1f} GiB "
            f"({'met' if last['peak_rss_gib'] < 20 else 'MISSED'}; target < 20 GiB)"
        )
    for s in doc.get("quality_summary", []):
        if s["method"] != "fast_ntk":
            continue
        ref = next(
            r
            for r in doc["quality_summary"]
            if r["method"] == "retrain"
            and (r["model"], r["forget_spec"]) == (s["model"], s["forget_spec"])
        )
        df = abs(s["acc_forget_mean"] - ref["acc_forget_mean"])
        dt = abs(s["acc_test_mean"] - ref["acc_test_mean"])
        ok = df <= 5 and dt <= 3
        out.append(
            f"quality {s['model']} {s['forget_spec']}: |forget - retrain| = {df:.1f}, "
            f"|test - retrain| = {dt:.1f} ({'met' if ok else 'MISSED'}; bounds 5 / 3)"
        )
    return out


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--part",
        choices=["all", "quality", "scaling", "precompute", "largest", "retrain-epoch", "report"],
        default="all",
    )
    ap.add_argument("--models", default="smallcnn,resnet18,vit_tiny")
    ap.add_argument("--seeds", default="smallcnn=3,resnet18=1,vit_tiny=1")
    ap.add_argument("--sizes", default="500,1000,5000,20000,50000")
    ap.add_argument("--recipe-epochs", type=int, default=30)
    ap.add_argument(
        "--epoch-sizes", default="500,1000", help="N at which a real retrain epoch is timed"
    )
    ap.add_argument("--full-ntk", default="smallcnn", help="models to try the full-model ntk on")
    ap.add_argument("--scaling-model", default="resnet18", help="a BN model (smoke runs)")
    ap.add_argument("--precompute-models", default="smallcnn,resnet18")
    ap.add_argument("--precompute-samples", type=int, default=256)
    ap.add_argument("--precompute-threads", default="1,2", help="thread counts to time")
    ap.add_argument("--precompute-workers", type=int, default=2)
    ap.add_argument("--precompute-executors", default="local,ray", help="'' for none")
    ap.add_argument("--largest-budget-s", type=float, default=3600.0)
    ap.add_argument("--largest-max-n", type=int, default=90000)
    ap.add_argument("--largest-shard", type=int, default=1024)
    ap.add_argument("--largest-workers", type=int, default=1, help="1: in-process on threads")
    ap.add_argument("--largest-threads", type=int, default=2)
    ap.add_argument("--largest-epoch-n", type=int, default=2048)
    ap.add_argument(
        "--largest-dataset", default="synthetic", help="synthetic (32x32) or a real set's D"
    )
    ap.add_argument("--out", default=str(OUT), help="output folder")
    ap.add_argument(
        "--smoke", action="store_true", help="1-epoch recipes: checks the script runs (no figures)"
    )
    args = ap.parse_args()
    OUT = Path(args.out)
    if args.smoke:
        for key, (model, peft, opts, _, _) in list(MODELS.items()):
            MODELS[key] = (model, peft, opts, TrainConfig(epochs=1), TrainConfig(epochs=1))
    torch.set_num_threads(1)  # two threads spin on a shared 2-core box
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    doc: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    doc["machine"] = f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    if args.part in ("all", "scaling"):
        doc["scaling"] = scaling(
            [int(n) for n in args.sizes.split(",")],
            args.recipe_epochs,
            [int(n) for n in args.epoch_sizes.split(",")],
            arch=args.scaling_model,
        )
        atomic_write_text(path, json.dumps(doc, indent=1))
    if args.part in ("all", "precompute"):
        doc["precompute"] = precompute_bench(
            args.precompute_models.split(","),
            args.precompute_samples,
            [int(t) for t in args.precompute_threads.split(",")],
            args.precompute_workers,
            [e for e in args.precompute_executors.split(",") if e],
        )
        atomic_write_text(path, json.dumps(doc, indent=1))
    if args.part == "largest":  # an hour of both cores: not part of "all"
        doc["largest"] = largest_n(
            args.largest_budget_s,
            args.largest_max_n,
            args.largest_workers,
            args.largest_threads,
            args.largest_shard,
            args.recipe_epochs,
            args.largest_epoch_n,
            dataset=args.largest_dataset,
        )
        atomic_write_text(path, json.dumps(doc, indent=1))
    if args.part == "retrain-epoch":  # after "largest": a real epoch instead of a small one
        if "largest" not in doc:
            raise SystemExit(f"{path} has no largest-N run to rebase; run --part largest first")
        retrain_epoch(
            doc["largest"], args.largest_dataset, args.largest_epoch_n, args.largest_threads
        )
        atomic_write_text(path, json.dumps(doc, indent=1))
    if args.part in ("all", "quality"):
        seeds = {k: int(v) for k, v in (s.split("=") for s in args.seeds.split(","))}
        models = args.models.split(",")
        # rows of models not re-run this time are kept (merge), those re-run are replaced
        rows = [r for r in doc.get("quality", []) if r["model"] not in models]
        skipped = {k: v for k, v in doc.get("full_ntk_skipped", {}).items() if k not in models}
        for key in models:
            want_full = key in args.full_ntk.split(",")
            fits, why = full_ntk_fits(key)
            if not fits:
                skipped[key] = f"refused by the memory estimate ({why})"
            for seed in range(seeds.get(key, 1)):
                with tempfile.TemporaryDirectory() as work:
                    rows += quality_seed(key, seed, want_full and fits and seed == 0, Path(work))
                doc["quality"], doc["full_ntk_skipped"] = rows, skipped
                doc["quality_summary"] = summarise(rows)
                atomic_write_text(path, json.dumps(doc, indent=1))
    if doc.get("scaling"):
        full_ntk_columns(doc["scaling"])
    if doc.get("quality"):
        doc["quality_summary"] = summarise(doc["quality"])
    doc["targets"] = targets(doc)
    atomic_write_text(path, json.dumps(doc, indent=1))
    figures(doc)
    write_settings(doc)
    atomic_write_text(OUT / "report.md", report(doc))
    log(f"wrote {OUT}/results.json, report.md, *.png, quality/*/")


if __name__ == "__main__":
    main()
