"""Memorization at CPU scale: Feldman-Zhang scores (serial vs Ray), the six proxies against them.

Digits + smallcnn is easy (~99% test), so memorization concentrates on a handful of samples;
``--label-noise`` relabels a share of D at random (default 5%) to create samples that can only
be fitted by memorization. Both the noisy and the clean set are scored.

    PYTHONPATH=src python benchmarks/memorization.py            # -> results/memorization/
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.memorization import add_label_noise, fz_config, load_scores, save_scores
from unlearnkit.memorization.gap import gap_check, parse_epoch_grid, train_until_gap
from unlearnkit.memorization.pipeline import feldman_zhang_scores, proxy_scores
from unlearnkit.memorization.proxies import PROXIES
from unlearnkit.metrics import peak_rss_mb
from unlearnkit.recipe import load_bundle
from unlearnkit.runtime import apply_threads, create_executor, thread_report
from unlearnkit.training import accuracy


def recipe(
    epochs: int,
    width: int,
    dataset: str = "digits",
    data_dir: str | None = None,
    subset: int | None = None,
    lr: float = 0.05,
    batch_size: int = 64,
):
    """The benchmark's training recipe, from scratch on all of D (shared with
    benchmarks/rum.py, which rebuilds it from results.json with ``recipe_of``)."""
    return build_config(
        dataset=dataset,
        data_dir=data_dir,
        dataset_options={} if subset is None else {"subset": subset},
        pretrain=False,
        peft="full",
        model_options={"width": width},
        train={"epochs": epochs, "lr": lr, "batch_size": batch_size},
    )


def recipe_of(r: dict):
    """The recipe a results.json was measured with (older files: digits, batch 64)."""
    return recipe(
        r["epochs"],
        r["width"],
        r.get("dataset", "digits"),
        r.get("data_dir"),
        r.get("subset"),
        r.get("lr", 0.05),
        r.get("batch_size", 64),
    )


def primary_set(r: dict) -> str:
    """The scored set the RUM benchmark uses: 'noisy' when labels were relabelled."""
    return r.get("primary", "noisy")


def run_fz(cfg, bundle, k, chunk, cache, ex):
    start = time.perf_counter()
    result = feldman_zhang_scores(cfg, bundle, fz_config(k=k, chunk_size=chunk), cache, ex)
    return result, time.perf_counter() - start


def _warm(_: int) -> int:
    """Import what the subset models need, so both Ray workers exist before the timing."""
    import unlearnkit.memorization.feldman_zhang
    import unlearnkit.models  # noqa: F401

    time.sleep(2.0)
    return os.getpid()


def start_ray():
    """A local 2-CPU Ray with its two workers warm, started once; its start-up time (Ray itself
    plus the workers' imports) is measured separately from the models' wall time."""
    # Ray lowers its workers' priority by 15 by default; on a machine shared with other jobs
    # that alone makes them several times slower than the serial run. Same priority as here.
    os.environ.setdefault("RAY_worker_niceness", "0")
    start = time.perf_counter()
    ex = create_executor("ray", num_cpus=2)
    ex.map(_warm, [0, 1])
    return ex, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--subset", type=int, default=None, help="score a seeded, class-stratified sample of D"
    )
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--full-proxies",
        action="store_true",
        help="also run the six proxies on the whole training set (one run; cost only)",
    )
    ap.add_argument("--threads", type=int, default=1, help="threads of the proxy runs")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--min-gap",
        type=float,
        default=5.0,
        help="train-test accuracy gap (points) the original must reach; the run records it "
        "and says plainly when it is not reached",
    )
    ap.add_argument(
        "--epoch-grid",
        default=None,
        help="train until the gap: try these epoch counts in order (e.g. 8,16,32; complete "
        "runs) and score with the first that reaches --min-gap (replaces --epochs)",
    )
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--label-noise", type=float, default=0.05)
    ap.add_argument("--chunk", type=int, default=5)
    ap.add_argument(
        "--timing-k",
        type=int,
        default=30,
        help="models in the serial-vs-Ray timing (the Ray ones are reused; 0: no timing)",
    )
    ap.add_argument(
        "--gap-only",
        action="store_true",
        help="only the train-test gap (the --epoch-grid search, or --epochs): writes "
        "OUT/gap.json and stops before any scoring",
    )
    ap.add_argument(
        "--executor",
        choices=["ray", "local"],
        default="ray",
        help="where the FZ subset models train (local: serial, no Ray, no timing)",
    )
    ap.add_argument("--clean", action="store_true", help="also score the clean data set")
    ap.add_argument("--out", type=Path, default=Path("results/memorization"))
    ap.add_argument("--cache", type=Path, default=Path("runs/bench-memorization"))
    ap.add_argument(
        "--timing-only",
        action="store_true",
        help="re-measure serial vs Ray only and update results.json",
    )
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="recompute the proxy-vs-FZ figures from the saved score files and rewrite the report",
    )
    args = ap.parse_args()
    if args.timing_only:
        return retime(args)
    if args.rescore:
        return rescore(args)
    grid = epoch_grid(args.epoch_grid)
    apply_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = recipe(args.epochs, args.width, args.dataset, args.data_dir, args.subset, args.lr,
                 args.batch_size)  # fmt: skip
    clean = load_bundle(cfg)
    primary = "noisy" if args.label_noise > 0 else "clean"
    noisy, noisy_ids = add_label_noise(clean, args.label_noise, seed=0)
    if args.gap_only:
        return gap_only(args, cfg, noisy if primary == "noisy" else clean, grid)
    searched = None
    if grid:  # train until the gap: the chosen epoch count becomes the recipe of everything
        cfg, _, checks = train_until_gap(
            cfg, noisy if primary == "noisy" else clean, args.min_gap, grid, seed=0
        )
        args.epochs = cfg.train.epochs
        searched = [c.as_dict() for c in checks]
        for c in checks:
            print(c.message(), flush=True)
    out: dict = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "subset": args.subset,
        "k": args.k,
        "fraction": 0.7,
        "epochs": args.epochs,
        "width": args.width,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "label_noise": args.label_noise,
        "primary": primary,
        "n_train": len(clean.train),
        "n_noisy": int(noisy_ids.numel()),
        "threads": torch.get_num_threads(),
        "machine": thread_report(),
        "datasets": {},
        "gap_search": searched,
    }
    start = time.perf_counter()

    # 1. Timing: serial then Ray on fresh caches; the K-model FZ run resumes the Ray cache.
    if args.executor == "ray":
        ray, startup = start_ray()
        out["ray_startup_s"] = startup
    else:  # serial: no Ray start-up and no serial-vs-Ray timing
        ray, startup = create_executor("local"), 0.0
    with ray:
        if args.timing_k > 0 and args.executor == "ray":
            ray_cache, out["timing"] = timing(cfg, noisy, args, ray, startup)
            shutil.copytree(ray_cache, args.cache / f"fz-{primary}", dirs_exist_ok=True)
        fz_main, wall = run_fz(
            cfg, noisy if primary == "noisy" else clean, args.k, args.chunk,
            args.cache / f"fz-{primary}", ray,
        )  # fmt: skip
        out["fz_wall_s"] = wall
        fz_clean = None
        if args.clean and primary == "noisy":
            fz_clean, _ = run_fz(cfg, clean, args.k, args.chunk, args.cache / "fz-clean", ray)
    sets = [(primary, noisy if primary == "noisy" else clean, fz_main)]
    if fz_clean is not None:
        sets.append(("clean", clean, fz_clean))

    # 2. Proxies (one training run each set) vs FZ.
    names = PROXIES.names()
    scores = {}
    for label, bundle, fz in sets:
        save_scores(fz.scores, args.out / f"fz_{label}.csv")
        tables, run = proxy_scores(cfg, bundle, names, seed=0)
        mem = fz.scores.score.numpy()
        ok = ~np.isnan(mem)
        rows = {}
        for name, table in tables.items():
            save_scores(table, args.out / f"proxy_{name}_{label}.csv")
            value = table.score.numpy()
            good = ok & ~np.isnan(value)
            rows[name] = {
                **agreement(mem[good], value[good], table.direction),
                "proxy_seconds": run.seconds[name],
                "cost_pct_of_fz": 100 * run.seconds[name] / fz.model_seconds,
                "cost_pct_incl_training": 100
                * (run.seconds[name] + run.train_seconds)
                / fz.model_seconds,
            }
        is_noisy = (
            np.isin(bundle.train.ids.numpy(), noisy_ids.numpy())
            if label == "noisy"
            else np.zeros(len(mem), dtype=bool)
        )
        out["datasets"][label] = {
            "fz_model_seconds": fz.model_seconds,  # summed over the K models: the FZ cost
            "train_seconds": run.train_seconds,
            "test_acc": accuracy(run.model, bundle.test),
            "fz_mean": float(np.nanmean(mem)),
            "fz_nan": int((~ok).sum()),
            "fz_mean_noisy": float(np.nanmean(mem[is_noisy])) if is_noisy.any() else None,
            "fz_mean_clean_samples": float(np.nanmean(mem[~is_noisy])),
            "fz_share_above_0.5": float(np.mean(mem[ok] > 0.5)),
            "fz_stderr_median": float(np.nanmedian(fz.scores.stderr.numpy())),
            "proxies": rows,
        }
        scores[label] = (mem, {n: t.score.numpy() for n, t in tables.items()}, is_noisy)
        if label == primary:  # the proxy run is the original (seed 0): its gap is the setting's
            check = gap_check(run.model, bundle, args.min_gap, args.epochs)
            out["gap"] = check.as_dict()
            print(check.message(), flush=True)
        print(label, json.dumps(rows, indent=1), flush=True)
    best = max(out["datasets"][primary]["proxies"].items(), key=lambda kv: abs(kv[1]["spearman"]))
    out["best_proxy"] = {"name": best[0], **best[1]}
    if args.full_proxies:
        out["full"] = full_proxies(args, names, out["datasets"][primary]["fz_model_seconds"])
    out["wall_s"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(out, indent=2))
    figures(scores, args.out)
    (args.out / "report.md").write_text(report(out))
    print(f"wrote {args.out}")


def full_proxies(args, names: list[str], fz_model_seconds: float) -> dict:
    """The six proxies on the whole training set in one training run: their cost, next to the
    cost FZ would have there (extrapolated from the measured subset models: K models, each on
    70% of D, scale linearly in D's size at fixed epochs; labelled as such)."""
    cfg = recipe(args.epochs, args.width, args.dataset, args.data_dir, None, args.lr,
                 args.batch_size)  # fmt: skip
    bundle = load_bundle(cfg)
    tables, run = proxy_scores(cfg, bundle, names, seed=0)
    scale = len(bundle.train) / args.subset if args.subset else 1.0
    fz_extrapolated = fz_model_seconds * scale
    fz = {n: t.score.numpy() for n, t in tables.items()}
    return {
        "n_train": len(bundle.train),
        "train_seconds": run.train_seconds,
        "proxy_seconds": dict(run.seconds),
        "peak_rss_mb": peak_rss_mb(),
        "fz_model_seconds_extrapolated": fz_extrapolated,
        "extrapolated_from": f"FZ model seconds on {args.subset} samples x {scale:.1f}",
        "cost_pct_of_fz_extrapolated": {
            n: 100 * (run.seconds[n] + run.train_seconds) / fz_extrapolated for n in names
        },
        "test_acc": accuracy(run.model, bundle.test),
        "score_quartiles": {
            n: [float(np.nanpercentile(v, q)) for q in (25, 50, 75)] for n, v in fz.items()
        },
    }


def agreement(mem: np.ndarray, value: np.ndarray, direction: int) -> dict:
    """How well a proxy tracks FZ scores (``direction`` -1: low value = memorized).

    Spearman over all samples is the paper's figure, but on digits most samples have FZ
    exactly 0 (always right, in or out), and those ties cap it; so also: Spearman among the
    samples FZ calls memorized at all (mem > 0.05), ROC-AUC for finding the strongly memorized
    ones (mem > 0.5), and the share of those in the proxy's top list of the same length.
    """
    proxy = value * direction
    some, strong = mem > 0.05, mem > 0.5
    top = np.argsort(-proxy, kind="stable")[: int(strong.sum())]
    return {
        "spearman": float(spearmanr(value, mem).statistic),  # signed, as in the paper
        "spearman_mem_pos": float(spearmanr(value[some], mem[some]).statistic),
        "auc_mem_gt_0.5": float(roc_auc_score(strong, proxy)),
        "top_precision_mem_gt_0.5": float(strong[top].mean()),
        "share_fz_zero": float(np.mean(np.abs(mem) < 1e-9)),
    }


def rescore(args) -> None:
    """Recompute the agreement figures from the saved score files (no training)."""
    path = args.out / "results.json"
    out = json.loads(path.read_text())
    for label, d in out["datasets"].items():
        mem = load_scores(args.out / f"fz_{label}.csv").score.numpy()
        for name, row in d["proxies"].items():
            table = load_scores(args.out / f"proxy_{name}_{label}.csv")
            value = table.score.numpy()
            good = ~np.isnan(mem) & ~np.isnan(value)
            row.update(agreement(mem[good], value[good], table.direction))
    path.write_text(json.dumps(out, indent=2))
    (args.out / "report.md").write_text(report(out))


def timing(cfg, bundle, args, ray, startup):
    """Serial and Ray wall time for K fresh models; the machine's load average is recorded too
    (other jobs on a shared machine slow both runs and shrink the speed-up)."""
    stamp = str(time.time_ns())
    load_before = os.getloadavg()[0]
    k = args.timing_k
    with create_executor("local") as local:
        serial, wall_serial = run_fz(
            cfg, bundle, k, args.chunk, args.cache / f"serial-{stamp}", local
        )
    ray_cache = args.cache / f"ray-{stamp}"
    remote, wall_ray = run_fz(cfg, bundle, k, args.chunk, ray_cache, ray)
    identical = bool(
        torch.equal(serial.scores.score.nan_to_num(9.0), remote.scores.score.nan_to_num(9.0))
    )
    record = {
        "k": k,
        "serial_wall_s": wall_serial,
        "ray_wall_s": wall_ray,
        "ray_startup_s": startup,
        "speedup": wall_serial / wall_ray,
        "speedup_incl_startup": wall_serial / (wall_ray + startup),
        "ray_equals_serial": identical,
        "model_seconds": serial.model_seconds,
        "chunk_size": args.chunk,
        "ray_worker_niceness": os.environ.get("RAY_worker_niceness"),  # noqa: SIM112
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    print(
        f"FZ: serial {wall_serial:.1f}s, ray {wall_ray:.1f}s, x{wall_serial / wall_ray:.2f}, "
        f"identical={identical}, load {load_before:.1f}",
        flush=True,
    )
    return ray_cache, record


def retime(args) -> None:
    path = args.out / "results.json"
    out = json.loads(path.read_text())
    cfg = recipe_of(out)
    noisy, _ = add_label_noise(load_bundle(cfg), out["label_noise"], seed=0)
    ray, startup = start_ray()
    with ray:
        _, record = timing(cfg, noisy, args, ray, startup)
    out.setdefault("timing_history", []).append(out["timing"])
    out["timing"] = record
    path.write_text(json.dumps(out, indent=2))
    (args.out / "report.md").write_text(report(out))


def figures(scores: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.5), squeeze=False)
    for ax, (label, (mem, _, is_noisy)) in zip(axes[0], scores.items(), strict=True):
        bins = np.linspace(-1, 1, 41)
        ax.hist(mem[~is_noisy & ~np.isnan(mem)], bins=bins, alpha=0.7, label="clean labels")
        if is_noisy.any():
            ax.hist(mem[is_noisy], bins=bins, alpha=0.7, label="relabelled")
        ax.set_yscale("log")
        ax.set_title(f"Feldman-Zhang memorization ({label})")
        ax.set_xlabel("mem = acc_in - acc_out")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fz_histogram.png", dpi=120)
    plt.close(fig)
    for label, (mem, proxies, is_noisy) in scores.items():
        fig, axes = plt.subplots(2, 3, figsize=(12, 7))
        for ax, (name, value) in zip(axes.flat, proxies.items(), strict=False):
            ax.scatter(mem[~is_noisy], value[~is_noisy], s=4, alpha=0.4, label="clean labels")
            if is_noisy.any():
                ax.scatter(mem[is_noisy], value[is_noisy], s=6, alpha=0.8, label="relabelled")
            ax.set_xlabel("FZ memorization")
            ax.set_title(name)
            if name == "curvature":
                ax.set_yscale("log")
        axes.flat[0].legend()
        fig.tight_layout()
        fig.savefig(out / f"proxy_scatter_{label}.png", dpi=120)
        plt.close(fig)


def gap_only(args, cfg, bundle, grid: list[int] | None) -> None:
    """The gap search alone (cheap: a few training runs), to size the recipe before scoring."""
    _, _, checks = train_until_gap(cfg, bundle, args.min_gap, grid or [args.epochs], seed=0)
    for c in checks:
        print(c.message(), flush=True)
    record = {
        "dataset": args.dataset,
        "subset": args.subset,
        "width": args.width,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "label_noise": args.label_noise,
        "n_train": len(bundle.train),
        "checks": [c.as_dict() for c in checks],
        "chosen_epochs": checks[-1].epochs,
        "reached": checks[-1].reached,
    }
    (args.out / "gap.json").write_text(json.dumps(record, indent=2))


def epoch_grid(text: str | None) -> list[int] | None:
    """``--epoch-grid`` parsed; a bad one is one line ``error: ...`` and exit 2, nothing run."""
    if not text:
        return None
    try:
        return parse_epoch_grid(text)
    except UnlearnkitError as exc:
        print(f"error: --epoch-grid {text}: {exc}", file=sys.stderr)
        sys.exit(2)


def gap_lines(r: dict) -> list[str]:
    """The train-test gap of the original (all parameters trained on D), stated plainly."""
    g = r.get("gap")
    if not g:
        return []
    verdict = "reached" if g["reached"] else "**NOT reached**: the model barely memorizes here"
    lines = [
        f"Train-test gap of the original (seed 0): **{g['gap']:.1f} points** (train "
        f"{g['train_acc']:.1f}%, test {g['test_acc']:.1f}%); target {g['target']:g}: {verdict}.",
        "",
    ]
    if r.get("gap_search"):
        tried = ", ".join(f"{c['epochs']} epochs {c['gap']:.1f}" for c in r["gap_search"])
        lines += [f"Epochs chosen by training until the gap (complete runs): {tried}.", ""]
    return lines


def report(r: dict) -> str:
    nan = float("nan")
    name = r.get("dataset", "digits")
    sub = f" (a seeded, class-stratified sample of {r['subset']})" if r.get("subset") else ""
    noise = (
        f" 'noisy' relabels {r['label_noise']:.0%} of D ({r['n_noisy']} samples) at random."
        if r["label_noise"] > 0
        else " No label noise."
    )
    lines = [
        f"# Memorization on {name} (smallcnn)",
        "",
        f"Feldman-Zhang with K={r['k']} models on random {r['fraction']:.0%} subsets, "
        f"{r['epochs']} epochs each (lr {r.get('lr', 0.05)}, batch {r.get('batch_size', 64)}), "
        f"smallcnn width {r['width']}, D = {r['n_train']} samples{sub}.{noise}",
        "",
        *gap_lines(r),
    ]
    t = r.get("timing")
    if t:
        lines += [
            f"## Wall time of {t['k']} subset models (2 cores)",
            "",
            "| executor | wall s |",
            "|---|---|",
            f"| local (serial, 1 thread) | {t['serial_wall_s']:.1f} |",
            f"| ray (2 CPUs, {t['chunk_size']} models per task) | {t['ray_wall_s']:.1f} |",
            f"| ray start-up (once, not in the row above) | {t['ray_startup_s']:.1f} |",
            "",
            f"Speed-up x{t['speedup']:.2f}, "
            f"x{t['speedup_incl_startup']:.2f} counting Ray's start-up "
            f"(machine load average {t['load_average_before']:.1f} before and "
            f"{t['load_average_after']:.1f} after the runs; above ~1 other jobs share the 2 "
            "cores); Ray scores identical to "
            f"serial: {t['ray_equals_serial']}. The K={r['k']} run then resumed the Ray cache "
            f"({r.get('fz_wall_s', nan):.1f}s more).",
            "",
        ]
    elif "ray_startup_s" in r:
        lines += [
            f"FZ wall time: {r['fz_wall_s']:.0f} s on Ray (2 CPUs, one thread per worker; "
            f"start-up {r.get('ray_startup_s', nan):.0f} s more).",
            "",
        ]
    else:
        lines += [f"FZ wall time: {r['fz_wall_s']:.0f} s, serial (no Ray).", ""]
    for label, d in r["datasets"].items():
        lines += [
            f"## Proxies vs FZ ({label})",
            "",
            f"FZ cost: {d['fz_model_seconds']:.1f}s of model training summed over the K models; "
            f"one ordinary training run: {d['train_seconds']:.1f}s.",
            "",
            f"FZ mean {d['fz_mean']:.3f}, share of samples with mem > 0.5: "
            f"{d['fz_share_above_0.5']:.3f}, median stderr {d['fz_stderr_median']:.3f}"
            + (
                f"; relabelled samples mean {d['fz_mean_noisy']:.3f} vs "
                f"{d['fz_mean_clean_samples']:.3f}"
                if d["fz_mean_noisy"] is not None
                else ""
            )
            + ".",
            "",
            "| proxy | Spearman vs FZ | Spearman, FZ > 0.05 | AUC, FZ > 0.5 | "
            "top-list precision | cost % of FZ (proxy only) | cost % incl. its training run |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, p in sorted(d["proxies"].items(), key=lambda kv: -abs(kv[1]["spearman"])):
            lines.append(
                f"| {name} | {p['spearman']:+.3f} | {p.get('spearman_mem_pos', nan):+.3f} | "
                f"{p.get('auc_mem_gt_0.5', nan):.3f} | "
                f"{p.get('top_precision_mem_gt_0.5', nan):.3f} | {p['cost_pct_of_fz']:.3f} | "
                f"{p['cost_pct_incl_training']:.2f} |"
            )
        share = next(iter(d["proxies"].values())).get("share_fz_zero")
        if share is not None:
            lines += [
                "",
                f"{share:.0%} of the samples have FZ exactly 0 (always right, in or out): "
                "those ties cap the all-sample Spearman; the next columns measure the proxy "
                "among samples FZ calls memorized (mem > 0.05), its ROC-AUC for finding the "
                "strongly memorized ones (mem > 0.5), and the share of those in its top list "
                "of the same length.",
            ]
        lines.append("")
    f = r.get("full")
    if f:
        lines += [
            f"## The six proxies on the whole training set ({f['n_train']} samples)",
            "",
            f"One training run, same recipe: {f['train_seconds']:.0f} s, test accuracy "
            f"{f['test_acc']:.1f}%, peak RSS {f['peak_rss_mb']:.0f} MB. FZ at this size is "
            f"**extrapolated** ({f['extrapolated_from']}): "
            f"{f['fz_model_seconds_extrapolated'] / 3600:.1f} h of model training.",
            "",
            "| proxy | proxy s | cost % of FZ incl. the training run (extrapolated FZ) |",
            "|---|---|---|",
        ]
        for n, sec in f["proxy_seconds"].items():
            lines.append(f"| {n} | {sec:.1f} | {f['cost_pct_of_fz_extrapolated'][n]:.2f} |")
        lines.append("")
    lines += [
        "Figures: `fz_histogram.png`, "
        + ", ".join(f"`proxy_scatter_{label}.png`" for label in r["datasets"])
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
