"""The audit's exact control, studied (issue 27): at which N the organisers' F of retraining
reaches 0.9 on digits, and at which K the control's U-LiRA interval covers 0.5 in >= 95% of runs.

The control is "retrain": a model retrained without the forget set, scored against another one
retrained without it with an independent seed. Any two such models are draws from one
distribution (they differ only in the seed), so the study trains a pool of retrained models once
and draws many audits from it:

* ``train --kind fixed`` (class 3): retrained models on D minus class 3, seeds 0, 1, ... (the
  audit's own reference models; the cache is the audit's, so ``benchmarks/audit.py`` and
  ``unlearnkit audit`` runs with the same recipe share them, their ``retrain`` rows too).
* ``train --kind random`` (random 10%): per U-LiRA pair k (the audit's protocol: a pool of
  2m targets, pair k forgets a random half F_k), two models retrained without F_k with
  independent seeds.
* ``analyse``: the N study (N per side drawn from the fixed pool, both F's; beyond the pool,
  F of Gaussians fitted per example, labelled extrapolated), finetune for contrast from the
  audit's cache, and the K study (K pairs drawn from each pool, U-LiRA AUC with the audit's
  pair-bootstrap interval and the calibrated ones, ``--intervals``; share of draws whose
  interval covers 0.5). Writes results/audit/control/{control.json,report.md}.
* ``simulate``: no models. The same K study on simulated confidences with a known answer
  (``unlearnkit.metrics.audit_simulation``: a per-model effect shared by a model's forget
  examples, strong for a class, weak for a random share, calibrated on the measured K study),
  under the null (coverage of 0.5) and against a small shift (power), for every interval in
  ``PAIR_INTERVALS``. Writes results/audit/control/simulation.json and appends its section to
  report.md.

    python benchmarks/audit_control.py train --kind fixed --models 96 --budget-s 1800
    python benchmarks/audit_control.py train --kind random --models 32 --budget-s 1200
    python benchmarks/audit_control.py analyse
    python benchmarks/audit_control.py simulate --kinds fixed    # then --kinds random
    python benchmarks/audit_control.py simulate --kinds fixed --draws 20 --ks 4,8 \
        --power-ks 8 --power-draws 10 --out /tmp/sim-out      # a smoke run (seconds)
    python benchmarks/audit_control.py train --kind fixed --models 6 --subset 300 --epochs 2 \
        --cache /tmp/ac && python benchmarks/audit_control.py analyse --cache /tmp/ac \
        --subset 300 --epochs 2 --out /tmp/ac-out        # a smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.audit import audit_config, make_protocol, settings_key
from unlearnkit.audit.jobs import REFERENCE, AuditJob, OutputCache, ids_hash, params_hash, run_job
from unlearnkit.config import build_config
from unlearnkit.metrics.audit_intervals import PAIR_INTERVALS, Fit, pair_interval
from unlearnkit.metrics.audit_simulation import KIND_DEFAULTS, simulate_pairs
from unlearnkit.metrics.audit_stats import (
    forgetting_quality,
    official_forgetting_quality,
    roc_auc,
)
from unlearnkit.recipe import load_bundle, starting_model
from unlearnkit.runtime import apply_threads

KINDS = {"fixed": "class:3", "random": "random:0.1"}
SECOND_DRAW = 500_000  # seed offset of a random pair's second retrained model


def setup(args: argparse.Namespace, kind: str, pairs: int = 8):
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["train"] = {"epochs": args.epochs}
    if args.subset is not None:
        overrides["dataset_options"] = {"subset": args.subset}
    cfg = build_config(overrides, forget=KINDS[kind], methods=["retrain"])
    bundle = load_bundle(cfg)
    audit = audit_config(k=max(pairs, 3), n=2)
    cache = OutputCache(args.cache / settings_key(cfg, bundle, audit))
    return cfg, bundle, audit, cache


def train(args: argparse.Namespace) -> None:
    cfg, bundle, audit, cache = setup(args, args.kind, args.models)
    protocol = make_protocol(cfg, bundle, audit)
    if args.kind == "fixed":  # reference models of seeds 0..models-1 on D \ class 3
        wanted = [(protocol.challenge_forget, s) for s in range(args.models)]
    else:  # two retrainings per pair: seeds k and k + SECOND_DRAW
        wanted = [
            (ids, k + offset)
            for k, ids in enumerate(protocol.pair_forget)
            for offset in (0, SECOND_DRAW)
        ]
    start_state = starting_model(cfg, bundle, audit.seed).state_dict()
    start = time.perf_counter()
    done = 0
    for ids, seed in wanted:
        if cache.has(f"{ids_hash(ids)}-s{seed}-{REFERENCE}-{params_hash({})}"):
            continue
        if time.perf_counter() - start > args.budget_s:
            print(f"budget spent after {done} models", flush=True)
            break
        job = AuditJob(ids, seed, [], True, cfg, bundle, start_state)
        for result in run_job(job):
            cache.save(result)
        done += 1
        print(
            f"{args.kind}: seed {seed} ({done} trained, {time.perf_counter() - start:.0f} s)",
            flush=True,
        )


def _load_pool(cache: OutputCache, ids: torch.Tensor, roles: tuple[str, ...]) -> dict:
    """{(role, seed): outputs} of every cached model of ``roles`` on forget set ``ids``."""
    pattern = re.compile(rf"^{ids_hash(ids)}-s(\d+)-({'|'.join(roles)})-[0-9a-f]+$")
    found = {}
    for path in sorted(cache.directory.glob("*.npz")):
        m = pattern.match(path.stem)
        if m:
            found[(m.group(2), int(m.group(1)))] = cache.load(path.stem)
    return found


def _f_pair(u: np.ndarray, r: np.ndarray) -> dict[str, float]:
    return {
        "official": official_forgetting_quality(u, r)[0],
        "ours": forgetting_quality(u, r)[0],
    }


def _summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, float)
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "draws": int(v.size),
    }


def n_study(args, cfg, bundle, cache, rng) -> dict[str, Any]:
    ids = make_protocol(cfg, bundle, audit_config(k=3, n=2)).challenge_forget
    pool_models = _load_pool(cache, ids, ("retrain", REFERENCE))
    pool = np.stack([m["phi"] for m in pool_models.values()])  # (P, examples)
    rows = []
    for n in sorted({*args.ns, len(pool) // 2}):
        if 2 * n > len(pool):
            continue
        draws = [rng.permutation(len(pool))[: 2 * n] for _ in range(args.draws)]
        fs = [_f_pair(pool[d[:n]], pool[d[n:]]) for d in draws]
        rows.append(
            {
                "n": n,
                "source": "measured (draws from the pool of retrained models)",
                "official": _summary([f["official"] for f in fs]),
                "ours": _summary([f["ours"] for f in fs]),
            }
        )
    mu, sd = pool.mean(0), pool.std(0, ddof=1)
    for n in args.extrapolate:
        fs = []
        for _ in range(args.sim_draws):
            u = rng.normal(mu, sd, (n, mu.size))
            r = rng.normal(mu, sd, (n, mu.size))
            fs.append(
                _f_pair(u, r)
                if n <= 256
                else {"official": official_forgetting_quality(u, r)[0], "ours": math.nan}
            )
        rows.append(
            {
                "n": n,
                "source": "EXTRAPOLATED: Gaussians fitted per example to the pool",
                "official": _summary([f["official"] for f in fs]),
                "ours": _summary([f["ours"] for f in fs])
                if not math.isnan(fs[0]["ours"])
                else None,
            }
        )
    contrast = []  # as the audit pairs them: the method at seeds 0..N-1 vs the references
    roles = {**pool_models, **_load_pool(cache, ids, ("finetune",))}
    for method in ("retrain", "finetune"):
        for n in args.ns:
            seeds = range(n)
            if not all((method, s) in roles and (REFERENCE, s) in roles for s in seeds):
                continue
            u = np.stack([roles[(method, s)]["phi"] for s in seeds])
            r = np.stack([roles[(REFERENCE, s)]["phi"] for s in seeds])
            contrast.append({"n": n, "method": method, **_f_pair(u, r)})
    return {
        "pool_models": len(pool),
        "examples": int(pool.shape[1]),
        "rows": rows,
        "as_audited": contrast,
    }


def _auc_run(phi_in, phi_out, intervals, n_boot, seed) -> tuple[float, dict[str, Any]]:
    """The control's AUC and, per interval method, its interval of the AUC."""
    found = {
        name: pair_interval(name, phi_in, phi_out, {"auc": roc_auc}, resamples=n_boot, seed=seed)[
            "auc"
        ]
        for name in intervals
    }
    auc = Fit().evaluate(phi_in, phi_out, {"auc": roc_auc})["auc"]
    return auc, found


def k_study(args, kind, rng) -> dict[str, Any]:
    cfg, bundle, _, cache = setup(args, kind, 3)
    if kind == "fixed":
        ids = make_protocol(cfg, bundle, audit_config(k=3, n=2)).challenge_forget
        models = list(_load_pool(cache, ids, ("retrain", REFERENCE)).values())
        pool = np.stack([m["phi"] for m in models])
        pairs_available = len(pool) // 2
    else:
        big = 4096
        protocol = make_protocol(cfg, bundle, audit_config(k=big, n=2))
        column = {int(i): j for j, i in enumerate(protocol.pool.numpy())}
        pair_rows = []
        for k, ids in enumerate(protocol.pair_forget):
            names = [
                f"{ids_hash(ids)}-s{k + o}-{REFERENCE}-{params_hash({})}" for o in (0, SECOND_DRAW)
            ]
            if not all(cache.has(n) for n in names):
                break
            rows = []
            for name in names:
                out = cache.load(name)
                row = np.full(len(column), np.nan)
                row[[column[int(i)] for i in out["ids"]]] = out["phi"]
                rows.append(row)
            pair_rows.append(rows)
        pairs_available = len(pair_rows)
    result = {"kind": kind, "forget": KINDS[kind], "pairs_available": pairs_available, "rows": []}
    for k in args.ks:
        if (k > pairs_available) or k < 3:
            continue
        covered: dict[str, list[bool]] = {name: [] for name in args.intervals}
        widths: dict[str, list[float]] = {name: [] for name in args.intervals}
        aucs = []
        for d in range(args.k_draws):
            if kind == "fixed":
                pick = rng.permutation(len(pool))[: 2 * k]
                phi_in, phi_out = pool[pick[:k]], pool[pick[k:]]
            else:
                pick = rng.permutation(pairs_available)[:k]
                swap = rng.random(k) < 0.5  # which of the two retrainings plays "unlearned"
                phi_in = np.stack([pair_rows[p][int(s)] for p, s in zip(pick, swap, strict=True)])
                phi_out = np.stack(
                    [pair_rows[p][1 - int(s)] for p, s in zip(pick, swap, strict=True)]
                )
            auc, found = _auc_run(phi_in, phi_out, args.intervals, args.n_boot, d)
            aucs.append(auc)
            for name, interval in found.items():
                covered[name].append(interval.covers(0.5))
                widths[name].append(interval.high - interval.low)
        distinct = math.comb(len(pool), 2 * k) if kind == "fixed" else math.comb(pairs_available, k)
        result["rows"].append(
            {
                "k": k,
                "draws": args.k_draws,
                "distinct_draws_possible": min(distinct, 10**12),
                "coverage_by_interval": {n: float(np.mean(v)) for n, v in covered.items()},
                "ci_width_by_interval": {n: float(np.nanmean(v)) for n, v in widths.items()},
                "auc": _summary(aucs),
            }
        )
    return result


def analyse(args: argparse.Namespace) -> None:
    """The parts asked for; parts not asked for are kept from an earlier control.json."""
    rng = np.random.default_rng(args.seed)
    path = args.out / "control.json"
    out = json.loads(path.read_text()) if path.is_file() else {"k_study": {}}
    if "n" in args.parts:
        cfg, bundle, _, cache = setup(args, "fixed")
        out["n_study"] = n_study(args, cfg, bundle, cache, rng)
    for kind in KINDS:
        if kind in args.parts:
            out["k_study"][kind] = k_study(args, kind, rng)
    out.setdefault("settings", {})[",".join(args.parts)] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    text = render(out)
    simulated = args.out / "simulation.json"
    if simulated.is_file():  # keep the simulation's section
        text += "\n" + render_simulation(json.loads(simulated.read_text()))
    (args.out / "report.md").write_text(text)
    print(text)


def _ms(s: dict[str, float] | None) -> str:
    if s is None:
        return "-"
    return f"{s['mean']:.3f} (sd {s['sd']:.3f}, {s['min']:.3f}-{s['max']:.3f})"


def render(out: dict[str, Any]) -> str:
    n = out.get("n_study", {"pool_models": 0, "examples": 0, "rows": [], "as_audited": []})
    lines = [
        "# The audit's exact control on digits (smallcnn + bn, class 3)",
        "",
        f"## N study: F of retraining against retraining ({n['pool_models']} retrained models "
        f"in the pool, {n['examples']} forget examples)",
        "",
        "| N per side | source | F official: mean (sd, min-max) | F ours: mean (sd, min-max) |",
        "|---|---|---|---|",
    ]
    for r in n["rows"]:
        lines.append(
            f"| {r['n']} | {r['source']} ({r['official']['draws']} draws) | "
            f"{_ms(r['official'])} | {_ms(r['ours'])} |"
        )
    lines += [
        "",
        "As `unlearnkit audit` pairs them (the method at seeds 0..N-1 against the reference "
        "models of the same seeds); finetune = 10 epochs on D_r, for contrast:",
        "",
        "| method | N | F official | F ours |",
        "|---|---|---|---|",
    ]
    for r in n["as_audited"]:
        lines.append(f"| {r['method']} | {r['n']} | {r['official']:.3f} | {r['ours']:.3f} |")
    for k in out["k_study"].values():
        lines += [
            "",
            f"## K study, forget `{k['forget']}` ({k['pairs_available']} pairs of "
            "retrained models available)",
            "",
            "| K | draws | control's interval covers 0.5 | AUC mean (sd, min-max) "
            "| mean CI width |",
            "|---|---|---|---|---|",
        ]
        for r in k["rows"]:
            coverage, width = _by_interval(r)
            lines.append(f"| {r['k']} | {r['draws']} | {coverage} | {_ms(r['auc'])} | {width} |")
    return "\n".join(lines) + "\n"


def _by_interval(row: dict[str, Any]) -> tuple[str, str]:
    """Coverage and mean width per interval method (an older row: the pair bootstrap only)."""
    if "coverage_by_interval" not in row:
        return f"{row['coverage']:.2f} (pair_bootstrap)", f"{row['ci_width_mean']:.3f}"
    cov, width = row["coverage_by_interval"], row["ci_width_by_interval"]
    return (
        ", ".join(f"{n} {v:.2f}" for n, v in cov.items()),
        ", ".join(f"{n} {v:.3f}" for n, v in width.items()),
    )


# -- the simulation study: the same K study on confidences with a known answer ----------------
def _simulated_row(kind: str, k: int, shift: float, draws: int, args, rng) -> dict[str, Any]:
    model = KIND_DEFAULTS[kind].model_copy(update={"shift": shift})
    covered = {n: 0 for n in args.intervals}
    above = {n: 0 for n in args.intervals}  # lower end above 0.5: "distinguishable"
    widths: dict[str, list[float]] = {n: [] for n in args.intervals}
    aucs = []
    for d in range(draws):
        phi_in, phi_out = simulate_pairs(model, k, rng)
        aucs.append(Fit().evaluate(phi_in, phi_out, {"auc": roc_auc})["auc"])
        for name in args.intervals:
            iv = pair_interval(
                name, phi_in, phi_out, {"auc": roc_auc}, resamples=args.resamples, seed=d
            )["auc"]
            covered[name] += int(iv.covers(0.5))
            above[name] += int(iv.low > 0.5)
            widths[name].append(iv.high - iv.low)
    return {
        "k": k,
        "shift": shift,
        "draws": draws,
        "coverage": {n: covered[n] / draws for n in args.intervals},
        "detected": {n: above[n] / draws for n in args.intervals},
        "ci_width_mean": {n: float(np.nanmean(widths[n])) for n in args.intervals},
        "auc": _summary(aucs),
    }


def smallest_k(rows: list[dict[str, Any]], interval: str, target: float) -> int | None:
    """The smallest K whose null coverage is not significantly below ``target`` (the measured
    share within 1.96 binomial sd of it: an exact 95% test measures 0.95 +- 0.011 over 400
    draws) and at which the interval can exclude 0.5 at all (some draw against the shift
    detected; an interval that never excludes 0.5 covers it trivially)."""
    null = {r["k"]: r for r in rows if r["shift"] == 0.0}
    power: dict[int, float] = {}  # the best detection rate over the shifts simulated
    for r in rows:
        if r["shift"] != 0.0:
            power[r["k"]] = max(power.get(r["k"], 0.0), r["detected"][interval])
    for k in sorted(null):
        slack = 1.96 * math.sqrt(target * (1 - target) / null[k]["draws"])
        ok = null[k]["coverage"][interval] >= target - slack
        if ok and power.get(k, 0.0) > 0:
            return k
    return None


def simulate(args: argparse.Namespace) -> None:
    """Coverage of 0.5 under the null and power against a shift, per kind, K and interval."""
    path = args.out / "simulation.json"

    def stored() -> dict[str, Any]:
        return json.loads(path.read_text()) if path.is_file() else {"kinds": {}}

    done = {}
    for kind in args.kinds:
        rng = np.random.default_rng([args.seed, list(KIND_DEFAULTS).index(kind), *args.ks])
        earlier = stored()["kinds"].get(kind, {}).get("rows", [])
        redone = {(k, 0.0) for k in args.ks} | {(k, args.shift) for k in args.power_ks}
        rows = [r for r in earlier if (r["k"], r["shift"]) not in redone]  # rows kept
        for k in args.ks:
            rows.append(_simulated_row(kind, k, 0.0, args.draws, args, rng))
            print(f"{kind} K={k} null: {rows[-1]['coverage']}", flush=True)
        for k in args.power_ks:
            rows.append(_simulated_row(kind, k, args.shift, args.power_draws, args, rng))
            print(f"{kind} K={k} shift {args.shift}: {rows[-1]['detected']}", flush=True)
        rows.sort(key=lambda r: (r["shift"], r["k"]))
        done[kind] = {
            "generator": KIND_DEFAULTS[kind].model_dump(),
            "rows": rows,
            "smallest_k": {n: smallest_k(rows, n, args.target) for n in args.intervals},
            "runs": [  # the settings of every simulate run that made these rows
                *stored()["kinds"].get(kind, {}).get("runs", []),
                {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
                | {"func": "simulate"},
            ],
        }
    out = stored()  # read again: a run for another kind may have finished meanwhile
    out["kinds"].update(done)
    out["target"] = args.target
    out["default_k"] = {
        n: _both(out["kinds"], n) for n in next(iter(out["kinds"].values()))["smallest_k"]
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    report = args.out / "report.md"
    kept = report.read_text().split(SIMULATION_HEADING)[0] if report.is_file() else ""
    report.write_text(kept.rstrip("\n") + "\n\n" + render_simulation(out))
    print(render_simulation(out))


def _both(kinds: dict[str, Any], interval: str) -> int | None:
    """The smallest K that is enough for every kind simulated (None: some kind never)."""
    found = [v["smallest_k"].get(interval) for v in kinds.values()]
    return None if any(k is None for k in found) else max(found)


SIMULATION_HEADING = "## Simulation study"


def render_simulation(out: dict[str, Any]) -> str:
    lines = [
        f"{SIMULATION_HEADING}: coverage of 0.5 by the control's interval (no models)",
        "",
        "Simulated logit-scaled confidences (`unlearnkit.metrics.audit_simulation`): per model "
        "an effect shared by all its forget examples plus per-example noise; the 'unlearned' "
        "model of each pair drawn like its reference (the null), or shifted (power). Coverage: "
        "share of draws whose interval covers 0.5; detected: share whose lower end is above "
        "0.5 (for `permutation`: the AUC above the null's upper quantile).",
    ]
    for kind, v in out["kinds"].items():
        g = v["generator"]
        lines += [
            "",
            f"### {kind}: {g['targets']} targets, model effect sd {g['model_sd']}, noise sd "
            f"{g['noise_sd']}",
            "",
            "| K | shift | draws | AUC mean (sd) | "
            + " | ".join(f"{n}: coverage / detected / width" for n in v["rows"][0]["coverage"])
            + " |",
            "|---|---|---|---|" + "---|" * len(v["rows"][0]["coverage"]),
        ]
        for r in v["rows"]:
            cells = [
                f"{r['coverage'][n]:.3f} / {r['detected'][n]:.3f} / {r['ci_width_mean'][n]:.3f}"
                for n in r["coverage"]
            ]
            lines.append(
                f"| {r['k']} | {r['shift']} | {r['draws']} | {r['auc']['mean']:.3f} "
                f"({r['auc']['sd']:.3f}) | " + " | ".join(cells) + " |"
            )
        lines += [
            "",
            f"Smallest K (coverage not significantly below {out['target']}, can detect): "
            f"{v['smallest_k']}",
        ]
    lines += ["", f"Enough for every kind simulated: {out['default_k']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(required=True)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    names = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    for name, func in (("train", train), ("analyse", analyse), ("simulate", simulate)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--threads", type=int, default=1)
        if name == "simulate":
            continue
        p.add_argument("--cache", type=Path, default=Path("results/audit/cache"))
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--subset", type=int, default=None)
    for name in ("analyse", "simulate"):
        sub.choices[name].add_argument(
            "--intervals",
            type=names,
            default=PAIR_INTERVALS.names(),
            help=f"interval methods compared ({', '.join(PAIR_INTERVALS.names())})",
        )
    m = sub.choices["simulate"]
    m.add_argument("--kinds", type=names, default=list(KIND_DEFAULTS))
    m.add_argument("--ks", type=ints, default=[4, 8, 16, 32, 48])
    m.add_argument("--draws", type=int, default=400, help="simulated audits per K (null)")
    m.add_argument("--power-ks", type=ints, default=[4, 8, 16, 32])
    m.add_argument("--power-draws", type=int, default=200, help="simulated audits per K (shift)")
    m.add_argument("--shift", type=float, default=1.0, help="added to every unlearned phi")
    m.add_argument("--resamples", type=int, default=200, help="bootstrap / permutation draws")
    m.add_argument("--target", type=float, default=0.95)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", type=Path, default=Path("results/audit/control"))
    t = sub.choices["train"]
    t.add_argument("--kind", choices=list(KINDS), default="fixed")
    t.add_argument("--models", type=int, default=64, help="fixed: seeds; random: pairs")
    t.add_argument("--budget-s", type=float, default=1800.0)
    a = sub.choices["analyse"]
    a.add_argument(
        "--ns", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16, 32, 64, 128]
    )
    a.add_argument(
        "--extrapolate",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[64, 128, 256, 512],
    )
    a.add_argument(
        "--ks", type=lambda s: [int(x) for x in s.split(",")], default=[4, 8, 12, 16, 24, 32, 48]
    )
    a.add_argument("--draws", type=int, default=20)
    a.add_argument("--sim-draws", type=int, default=5)
    a.add_argument("--k-draws", type=int, default=200)
    a.add_argument("--n-boot", type=int, default=1000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--parts",
        type=lambda s: [p for p in s.split(",") if p],
        default=["n", *KINDS],
        help="n (the N study), fixed, random (the K study per kind)",
    )
    a.add_argument("--out", type=Path, default=Path("results/audit/control"))
    args = parser.parse_args()
    apply_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
