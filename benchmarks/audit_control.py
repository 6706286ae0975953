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
  pair-bootstrap interval; share of draws whose interval covers 0.5). Writes
  results/audit/control/{control.json,report.md}.

    python benchmarks/audit_control.py train --kind fixed --models 96 --budget-s 1800
    python benchmarks/audit_control.py train --kind random --models 32 --budget-s 1200
    python benchmarks/audit_control.py analyse
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
from unlearnkit.metrics.audit_stats import (
    bootstrap_ci,
    forgetting_quality,
    loo_llr,
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


def _auc_run(phi_in, phi_out, n_boot, seed) -> tuple[float, list[float]]:
    llr_in, llr_out = loo_llr(phi_in, phi_out)
    valid = ~np.isnan(llr_in) & ~np.isnan(llr_out)
    pairs, cols = np.nonzero(valid)
    pos, neg = llr_in[pairs, cols], llr_out[pairs, cols]
    ci = bootstrap_ci(roc_auc, pos, neg, n_boot=n_boot, seed=seed, groups=(pairs, pairs))
    return roc_auc(pos, neg), [ci[0], ci[1]]


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
        covered, aucs, widths = [], [], []
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
            auc, ci = _auc_run(phi_in, phi_out, args.n_boot, d)
            covered.append(ci[0] <= 0.5 <= ci[1])
            aucs.append(auc)
            widths.append(ci[1] - ci[0])
        distinct = math.comb(len(pool), 2 * k) if kind == "fixed" else math.comb(pairs_available, k)
        result["rows"].append(
            {
                "k": k,
                "draws": args.k_draws,
                "distinct_draws_possible": min(distinct, 10**12),
                "coverage": float(np.mean(covered)),
                "auc": _summary(aucs),
                "ci_width_mean": float(np.mean(widths)),
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
    (args.out / "report.md").write_text(render(out))
    print((args.out / "report.md").read_text())


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
            lines.append(
                f"| {r['k']} | {r['draws']} | {r['coverage']:.2f} | {_ms(r['auc'])} | "
                f"{r['ci_width_mean']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(required=True)
    for name, func in (("train", train), ("analyse", analyse)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--cache", type=Path, default=Path("results/audit/cache"))
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--subset", type=int, default=None)
        p.add_argument("--threads", type=int, default=1)
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
