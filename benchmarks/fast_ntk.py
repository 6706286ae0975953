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
Scaling: resnet18 + bn on synthetic 32x32 images, each N built for real (the Gram of its first
N samples, its own factorisation): precompute time, state size, per-deletion latency for
k = 1, 10, 100 and RSS at each N, and the retrain time measured in the same process. An N whose
precompute does not fit ``--scaling-budget-s`` is reported as not built, with no latency and
no growth claim; growth is stated only between N that were built.
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
from types import SimpleNamespace
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
from unlearnkit.metrics.cost import resident_bytes
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
from unlearnkit.ntk.incremental import forget_rows
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


def state_bytes(state: NTKState) -> int:
    """Bytes of the state's own tensors (A, H, b, the ids and flags, the full solution)."""
    parts = (state.gram, state.inverse, state.rhs, state.ids, state.alive, state.solution_full)
    return sum(t.numel() * t.element_size() for t in parts)


def build_plan(
    n: int, done: int, gram_s: float, inverse_s: float | None, budget_s: float, fits: bool
) -> str | None:
    """Why N is not built (None: build it): the Gram work still to do at the rate measured so
    far, plus a factorisation as long as the last one, must fit what is left of the budget."""
    if not fits:
        return "the state and the running sum do not fit this machine's free memory"
    if done == 0 or inverse_s is None:
        return None  # nothing measured yet: the first N is always built
    need = (n - done) * gram_s / done + inverse_s
    if gram_s + need > budget_s:
        return (
            f"would need ~{need:,.0f} s more (Gram at {gram_s / done:.3f} s/sample + one "
            f"factorisation), beyond the {budget_s:,.0f} s budget"
        )
    return None


def scaling(
    sizes: list[int],
    recipe_epochs: int,
    epoch_sizes: list[int],
    chunk: int = 32,
    arch: str = "resnet18",
    budget_s: float = 7200.0,
    ks: tuple[int, ...] = (1, 10, 100),
) -> dict[str, Any]:
    """Every N built for real and measured side by side in this process: the Jacobians + Gram
    of the first N samples (summed in order, so N extends the previous N by the samples in
    between; the time at N is the measured Gram time of all N samples), the factorisation of
    that state, its size, and deletions of k samples on it; real retrain epochs at
    ``epoch_sizes``. An N whose Gram work and factorisation would not fit ``budget_s`` (from the
    rate measured so far) or memory is reported as not built, with no latency."""
    sizes = sorted(sizes)
    nmax = max(sizes)
    bundle, model, names, space, p, total, w0 = synthetic_bn_setup(arch, nmax)
    log(f"scaling: {arch} bn P={p:,} of {total:,}; synthetic N up to {nmax:,}, built per N")
    # 1. retrain: real epochs on this machine (one warm-up epoch on 64 samples first)
    probe = copy.deepcopy(model)
    epoch_seconds(probe, bundle.train.subset(torch.arange(64)), names)
    epochs_measured = {}
    for n in epoch_sizes:
        epochs_measured[n] = epoch_seconds(probe, bundle.train.subset(torch.arange(n)), names)
        log(f"  one retrain epoch on N={n:,}: {epochs_measured[n]:.1f}s")
    biggest = max(epoch_sizes)
    train_s_per_sample = epochs_measured[biggest] / biggest
    # the state (A, H, b) and the running sums (A, b) and one segment's accumulator
    fits = 5 * p * p * 8 < 0.8 * available_memory()
    gram = torch.zeros(p, p, dtype=torch.float64)
    rhs = torch.zeros(p, dtype=torch.float64)
    done, gram_s, inverse_s = 0, 0.0, None
    # warm-up of the Jacobian path (first-call set-up; not timed): what forget_rows reads
    like_state = SimpleNamespace(
        names=list(space.names),
        num_classes=10,
        kernel="exact",
        gram=torch.empty(0).double(),
        target_scale=None,  # the targets do not change the work timed here
    )
    forget_rows(model, like_state, w0, bundle.train.subset(torch.arange(1)))
    rows: list[dict[str, Any]] = []
    save_s = state_file_gib = None
    for n in sizes:
        measured = n in epochs_measured
        epoch_s = epochs_measured[n] if measured else n * train_s_per_sample
        row: dict[str, Any] = {
            "N": n,
            "P": p,
            "total_params": total,
            "retrain_epoch_s": epoch_s,
            "retrain_epoch_measured": measured,
            "retrain_s": epoch_s * recipe_epochs,
        }
        why_not = build_plan(n, done, gram_s, inverse_s, budget_s, fits)
        if why_not is not None:
            rows.append({**row, "built": False, "not_built": why_not})
            log(f"  N={n:,}: not built ({why_not})")
            continue
        # 2. the Gram of samples [done, n), added to the running sums (timed)
        t = time.perf_counter()
        seg = accumulate_gram(
            model, space, bundle.train.x[done:n], bundle.train.y[done:n], 10, w0, chunk
        )
        gram.add_(seg.gram)
        rhs.add_(seg.rhs)
        del seg
        gram_s += time.perf_counter() - t
        done = n
        # 3. this N's own state: factorised from its Gram (timed)
        with measure_cost() as built:
            state = NTKState.from_gram(
                list(space.names), [list(s) for s in space.shapes], gram.clone(), rhs.clone(),
                0.1, 10, torch.arange(n), {},
            )  # fmt: skip
        inverse_s = built.time_s
        log(f"  N={n:,}: Gram {gram_s:.1f}s (all {n:,} samples), factorisation {inverse_s:.1f}s")
        if save_s is None:  # the state file's size and write time do not depend on N
            path = Path(tempfile.mkdtemp()) / "ntk_state.safetensors"
            t = time.perf_counter()
            state.save(path)
            save_s = time.perf_counter() - t
            state_file_gib = path.stat().st_size / GIB
            path.unlink()
        data_n = bundle.train.subset(torch.arange(n))
        row.update(
            built=True,
            gram_s=gram_s,
            inverse_s=inverse_s,
            precompute_s=gram_s + inverse_s,
            state_gib=state_bytes(state) / GIB,
            latency_s={},
            deletion_peak_extra_mib={},
        )
        next_id = 0
        for k in ks:
            ids = torch.arange(next_id, next_id + k)
            next_id += k
            with measure_cost() as cost:
                delete_samples(model, state, w0, data_n.select_ids(ids))
            row["latency_s"][str(k)] = cost.time_s
            row["deletion_peak_extra_mib"][str(k)] = cost.peak_mem_mb
            assert int((~state.alive).sum()) == next_id
            log(f"  N={n:,} k={k}: {cost.time_s:.2f}s")
        row["rss_gib"] = resident_bytes() / GIB  # with the running sums of this benchmark
        row["peak_rss_gib"] = peak_rss_gib()
        rows.append(row)
        del state, data_n
    built_rows = [r for r in rows if r["built"]]
    out = {
        "model": arch,
        "peft": "bn",
        "P": p,
        "total_params": total,
        "image_size": 32,
        "recipe_epochs": recipe_epochs,
        "chunk": chunk,
        "built_per_n": True,
        "budget_s": budget_s,
        "retrain_epochs_measured": {str(k): v for k, v in epochs_measured.items()},
        "train_s_per_sample": train_s_per_sample,
        "gram_s_per_sample": gram_s / done if done else None,
        "state_save_s": save_s,
        "state_file_gib": state_file_gib,
        "available_gib": available_memory() / GIB,
        "rows": rows,
        "notes": (
            f"Every N in {[r['N'] for r in built_rows]} was built in this run: the Jacobians "
            "and Gram of its first N samples (summed in order: each N adds the samples since "
            "the previous N to the running sums; its Gram time counts all N samples), its own "
            "factorisation, and the deletions k = "
            f"{', '.join(map(str, ks))} on that state. Not built: "
            + (
                ", ".join(f"N = {r['N']:,} ({r['not_built']})" for r in rows if not r["built"])
                or "none"
            )
            + f". Retrain: real epochs at N in {sorted(epochs_measured)} (larger N: that "
            "epoch's s/sample x N, marked *). Latency excludes rewriting the state file "
            "(state_save_s). RSS at N includes this benchmark's running sums (one P x P "
            "matrix) besides the state."
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
                "limit_valid": cost.check(per).valid,
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
    if not sc.get("built_per_n"):
        return  # a run that cloned one Gram for every N: nothing per N to plot
    ns = [r["N"] for r in sc["rows"]]
    built = [r for r in sc["rows"] if r["built"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in sorted({k for r in built for k in r["latency_s"]}, key=int):
        pts = [(r["N"], r["latency_s"][k]) for r in built if k in r["latency_s"]]
        ax.plot(*zip(*pts, strict=True), "o-", label=f"fast_ntk deletion, k={k}")
    ax.plot(
        ns,
        [r["retrain_s"] for r in sc["rows"]],
        "k--",
        label="retrain (measured epoch x recipe epochs)",
    )
    ax.plot(ns, [0.01 * r["retrain_s"] for r in sc["rows"]], "k:", label="1% of retrain")
    ax.plot(
        [r["N"] for r in built],
        [r["precompute_s"] for r in built],
        "s-",
        color="grey",
        label="one-time precompute (measured at each N)",
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
    ax.plot([r["N"] for r in built], [r["state_gib"] for r in built], "o-", label="NTK state")
    ax.plot([r["N"] for r in built], [r["rss_gib"] for r in built], "^-", label="process RSS")
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


def scaling_report(sc: dict[str, Any]) -> list[str]:
    """The scaling section: one row per N, built or not (and why)."""
    title = f"## Scaling ({sc['model']} + bn, synthetic 32x32)"
    if not sc.get("built_per_n"):
        return [
            title,
            "",
            "Withdrawn: this run cloned one 128-sample Gram for every N, so its latency and "
            "memory were independent of N by construction (issue 29). Run `--part scaling` "
            "again: it builds each N.",
            "",
        ]
    rate = sc.get("gram_s_per_sample")
    lines = [
        title,
        "",
        f"P = {sc['P']:,} trainable of {sc['total_params']:,}; state file "
        f"{fmt(sc['state_file_gib'])} GiB (written in {fmt(sc['state_save_s'])} s); "
        f"Jacobian+Gram {fmt(rate, '.3f')} s/sample measured over every built N; budget "
        f"{sc['budget_s']:,.0f} s for the Gram and factorisations; retrain = one epoch x "
        f"{sc['recipe_epochs']} epochs.",
        "",
        "| N | built | Gram s | factorisation s | state GiB | RSS GiB | retrain s | k=1 s | "
        "k=10 s | k=100 s | k=1 / retrain | k=10 / retrain | k=100 / retrain | "
        "full NTK dual GiB (est.) | full NTK |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sc["rows"]:
        star = "" if r["retrain_epoch_measured"] else "*"
        full = f"{r['full_ntk_dual_gib']:,.0f} | {'refused' if r['full_ntk_refused'] else 'fits'}"
        if not r["built"]:
            lines.append(
                f"| {r['N']:,} | no: {r['not_built']} | - | - | - | - | "
                f"{r['retrain_s']:,.0f}{star} | - | - | - | - | - | - | {full} |"
            )
            continue
        lat = r["latency_s"]
        ks = ("1", "10", "100")
        ratios = [f"{100 * lat[k] / r['retrain_s']:.3f}%" if k in lat else "-" for k in ks]
        lines.append(
            f"| {r['N']:,} | yes | {r['gram_s']:,.0f} | {r['inverse_s']:,.0f} | "
            f"{r['state_gib']:.2f} | {r['rss_gib']:.1f} | {r['retrain_s']:,.0f}{star} | "
            + " | ".join(fmt(lat.get(k), ".2f") for k in ks)
            + f" | {' | '.join(ratios)} | {full} |"
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
                f'At N = {r["N"]:,} the planner refuses before any work: "{r["full_ntk_refused"]}"'
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
    return lines


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
        lines += scaling_report(sc)
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
            "rate of one square 1024 GEMM measured on the same threads (not at the Gram's "
            "shapes: a time below the limit is flagged INVALID FLOOR). Pool / Ray rows: "
            "marginal s/sample "
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
                f"{r['x_limit']:.1f}{'' if r.get('limit_valid', True) else ' INVALID FLOOR'} | "
                f"{fmt(r.get('startup_s'))} |"
            )
        lines += ["", f"Machine during this part: {pc['machine']}"]
    if doc.get("targets"):
        lines += ["", "## Targets", ""] + [f"- {t}" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


def scaling_targets(sc: dict[str, Any]) -> list[str]:
    """Latency share of retrain per built N, and growth claims only between N that were built
    (each state precomputed at its own N); none from a single N."""
    built = {r["N"]: r for r in sc["rows"] if r["built"]}
    out = []
    for r in built.values():
        for k, lat in r["latency_s"].items():
            ratio = lat / r["retrain_s"]
            out.append(
                f"latency k={k} at N={r['N']:,}: {100 * ratio:.3f}% of retrain "
                f"({'met' if ratio <= 0.01 else 'MISSED'}; target <= 1%)"
            )
    if len(built) < 2:
        out.append("latency growth with N: no claim (fewer than two N built)")
    else:
        first, last = built[min(built)], built[max(built)]
        for k in first["latency_s"]:
            if k in last["latency_s"]:
                g = last["latency_s"][k] / first["latency_s"][k]
                out.append(
                    f"latency growth N={first['N']:,} -> {last['N']:,} (both built), k={k}: "
                    f"{g:.2f}x ({'met' if g < 2 else 'MISSED'}; target < 2x); beyond "
                    f"N={last['N']:,}: not measured"
                )
        g = last["state_gib"] / first["state_gib"]
        out.append(
            f"state size N={first['N']:,} -> {last['N']:,}: {first['state_gib']:.2f} -> "
            f"{last['state_gib']:.2f} GiB ({g:.2f}x, measured)"
        )
    if built:
        last = built[max(built)]
        out.append(
            f"process RSS at N={last['N']:,} (largest built): {last['rss_gib']:.1f} GiB "
            f"({'met' if last['rss_gib'] < 20 else 'MISSED'}; target < 20 GiB)"
        )
    not_built = [f"{r['N']:,}" for r in sc["rows"] if not r["built"]]
    if not_built:
        out.append(f"N = {', '.join(not_built)}: not built in this run, no claim")
    return out


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
    if sc and sc.get("built_per_n"):
        out += scaling_targets(sc)
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
    ap.add_argument("--sizes", default="500,1000,2000,5000,10000,20000")
    ap.add_argument("--recipe-epochs", type=int, default=30)
    ap.add_argument(
        "--epoch-sizes", default="500,1000", help="N at which a real retrain epoch is timed"
    )
    ap.add_argument("--full-ntk", default="smallcnn", help="models to try the full-model ntk on")
    ap.add_argument("--scaling-model", default="resnet18", help="a BN model (smoke runs)")
    ap.add_argument(
        "--scaling-budget-s",
        type=float,
        default=7200.0,
        help="seconds for the Gram work and factorisations of the scaling part: an N that "
        "would not fit is reported as not built",
    )
    ap.add_argument("--scaling-ks", default="1,10,100", help="deletion sizes timed at each N")
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
            budget_s=args.scaling_budget_s,
            ks=tuple(int(k) for k in args.scaling_ks.split(",")),
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
    if doc.get("scaling") and doc["scaling"].get("built_per_n"):
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
