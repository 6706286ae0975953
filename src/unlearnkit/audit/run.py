"""Run an audit: the shadow models of both protocols, then the statistics per method.

U-LiRA (K pairs): pair k trains on D with seed k, unlearns its forget set F_k with each method
("in") and retrains without F_k with an independent seed ("out"). A fixed forget spec
(``class:3``, ``indices:...``) forgets the same set in every pair; a random one (``random:0.1``,
m samples) draws a pool of 2m target samples once and each pair forgets a random half of it, so
every target is unlearned in about half the pairs and retrained-without in the same pairs.

Challenge (N models): N seeds each unlearn the spec's forget set F* and N retrain without it.
For a fixed spec the first min(K, N) challenge models are the U-LiRA pairs (same forget set,
same seeds) and come from the cache at no cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.audit.config import AuditConfig
from unlearnkit.audit.jobs import (
    REFERENCE,
    AuditJob,
    OutputCache,
    ensemble_config,
    ensemble_role,
    ids_hash,
    model_name,
    reference_role,
    run_job,
)
from unlearnkit.audit.ulira import interval_fields, ulira_intervals, ulira_statistics
from unlearnkit.config import ExperimentConfig
from unlearnkit.data import DatasetBundle
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import create_method
from unlearnkit.metrics.audit_stats import (
    challenge_score,
    forgetting_quality,
    loo_llr,
    mean_bootstrap_ci,
    official_forgetting_quality,
)
from unlearnkit.recipe import load_bundle, sized_for, starting_model
from unlearnkit.runtime import Executor, create_executor, thread_report

ModelProgress = Callable[[int, int], None]  # (models done, models in total)
CONTROL = "retrain"  # the exact control every audit scores (ExperimentConfig puts it first)
CONTROL_WARNING = "this audit cannot tell exact from inexact at these settings"
RAY_WAVE = 32  # jobs handed to Ray at once (the cache and the progress bar advance per batch)


@dataclass
class Protocol:
    """The forget set of every U-LiRA pair and of the challenge models."""

    fixed: bool  # the spec names the same samples whatever the seed
    pool: torch.Tensor  # the targets U-LiRA scores (sorted ids)
    pair_forget: list[torch.Tensor]  # F_k for pair k
    challenge_forget: torch.Tensor  # F*


def make_protocol(cfg: ExperimentConfig, bundle: DatasetBundle, audit: AuditConfig) -> Protocol:
    train = bundle.train
    forget = select_forget(train, cfg.forget, audit.seed)
    fixed = torch.equal(forget, select_forget(train, cfg.forget, audit.seed + 1))
    if fixed:
        return Protocol(True, forget, [forget] * audit.k, forget)
    m = len(forget)
    if 2 * m >= len(train):
        raise UnlearnkitError(
            f"audit: forget spec {cfg.forget!r} selects {m} of {len(train)} samples; the U-LiRA "
            "protocol draws a pool of twice that many targets, so it must be under half of D"
        )
    gen = torch.Generator().manual_seed(audit.seed * 7919 + 17)
    pool = torch.sort(train.ids[torch.randperm(len(train), generator=gen)[: 2 * m]]).values
    pairs = []
    for k in range(audit.k):
        g = torch.Generator().manual_seed(audit.seed * 7919 + 1000 + k)
        pairs.append(torch.sort(pool[torch.randperm(2 * m, generator=g)[:m]]).values)
    return Protocol(False, pool, pairs, forget)


def settings_key(cfg: ExperimentConfig, bundle: DatasetBundle, audit: AuditConfig) -> str:
    """What makes a cached model reusable: the recipe, the data, and how models start."""
    recipe = cfg.model_dump(
        mode="json",
        exclude={"forget", "seeds", "methods", "method_params", "relearn_threshold"}
        | {"relearn_threshold_fraction", "relearn_max_epochs", "reference_tolerance"}
        # judge the run, not its models; the scaling block is a record (the epochs it gives
        # are in the key already)
        | {"epoch_scaling"},
    )
    text = json.dumps(
        {
            "recipe": recipe,
            "data": bundle.fingerprint,
            "test": bundle.test.fingerprint(),
            "shared_start": audit.shared_start,
            "start_seed": audit.seed if audit.shared_start else None,
            "version": 1,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class AuditRun:
    """The results document (``results.json``) and the per-example arrays behind it."""

    results: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]  # per method: llr, epsilon, ids, ...


def _plan(protocol: Protocol, audit: AuditConfig) -> list[tuple[torch.Tensor, int]]:
    """Every (forget set, seed) whose models the audit needs, without repeats."""
    wanted: dict[tuple[str, int], tuple[torch.Tensor, int]] = {}
    sets = [
        *enumerate(protocol.pair_forget),
        *((i, protocol.challenge_forget) for i in range(audit.n)),
    ]
    for index, ids in sets:
        seed = audit.seed + index
        wanted.setdefault((ids_hash(ids), seed), (ids, seed))
    return list(wanted.values())


def run_audit(
    cfg: ExperimentConfig,
    audit: AuditConfig,
    cache_dir: str | Path,
    executor: Executor | None = None,
    progress: ModelProgress | None = None,
    bundle: DatasetBundle | None = None,
    wave: int | None = None,
) -> AuditRun:
    """Train (or load from ``cache_dir``) every shadow model, then score each method.

    ``cfg.methods`` are the methods audited (``retrain`` among them is audited like any other:
    it must score AUC ~ 0.5 and F ~ 1); the reference is always a separate retrained model.
    ``wave``: jobs handed to the executor at once (default: a pool's worker count, 32 for Ray,
    1 in-process), so progress and the cache advance while the audit runs.
    """
    machine = thread_report()
    started = time.perf_counter()
    bundle = bundle or load_bundle(cfg)
    cfg = sized_for(cfg, bundle)  # epochs scaled to this data, as the comparison run does
    protocol = make_protocol(cfg, bundle, audit)
    methods = [(m, dict(cfg.method_params.get(m, {}))) for m in cfg.methods]
    for name, params in methods:
        create_method(name, **params)  # bad hyper-parameters fail before any training
    ensembles, options = list(audit.ensembles), dict(audit.ensemble_options)
    for scheme in ensembles:
        ensemble_config(scheme, options, cfg, audit.seed)  # a bad shape fails before training
    # (scheme, policy, row name): each deleted ensemble the audit scores
    deleted = [(e, p, ensemble_role(e, p)) for e in ensembles for p in audit.ensemble_policies]
    cache = OutputCache(Path(cache_dir) / settings_key(cfg, bundle, audit))
    plan = _plan(protocol, audit)
    total = len(plan) * (len(methods) + 1 + len(deleted) + len(ensembles))
    start_state = None
    jobs = []
    for ids, seed in plan:
        todo = [(m, p) for m, p in methods if not cache.has(model_name(ids, seed, m, p))]
        ref = not cache.has(model_name(ids, seed, REFERENCE, {}))
        ens = [
            (e, p) for e, p, row in deleted if not cache.has(model_name(ids, seed, row, options))
        ]
        ens_refs = [
            e for e in ensembles if not cache.has(model_name(ids, seed, reference_role(e), options))
        ]
        if todo or ref or ens or ens_refs:
            jobs.append(AuditJob(ids, seed, todo, ref, cfg, bundle, None, ens, ens_refs, options))
    done = total - sum(j.count for j in jobs)
    if progress:
        progress(done, total)
    if jobs and audit.shared_start and (cfg.pretrain or cfg.weights is not None):
        start_state = starting_model(cfg, bundle, audit.seed).state_dict()
        for job in jobs:
            job.start_state = start_state
    executor = executor or create_executor("local")
    if wave is None:  # a pool's worker count; Ray schedules a batch over its cluster itself
        wave = int(getattr(executor, "workers", RAY_WAVE if executor.name == "ray" else 1))
    wave = max(1, wave)
    for s in range(0, len(jobs), wave):
        for results in executor.map(run_job, jobs[s : s + wave]):
            for result in results:
                cache.save(result)
                done += 1
        if progress:
            progress(done, total)
    trained = sum(j.count for j in jobs)

    summary: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    rows = [(m, p, {}, None) for m, p in methods]  # (row, params, reference params, policy)
    rows += [(row, options, options, policy) for _, policy, row in deleted]
    for name, params, ref_params, policy in rows:  # each scored against its reference
        summary[name], arrays[name] = _score_method(
            protocol, audit, cache, name, params, reference_role(name), ref_params
        )
        summary[name]["reference"] = reference_role(name)
        if policy is not None:
            summary[name]["policy"] = policy
    every = [
        (REFERENCE, {}),
        *methods,
        *((row, options) for _, _, row in deleted),
        *((reference_role(e), options) for e in ensembles),
    ]
    model_seconds = sum(
        cache.load(model_name(ids, seed, role, p))["seconds"]
        for ids, seed in plan
        for role, p in every
    )
    results = {
        "kind": "audit",
        "dataset": cfg.dataset,
        "model": cfg.model,
        "peft": cfg.peft,
        "forget": cfg.forget,
        "methods": [m for m, _ in methods] + [row for _, _, row in deleted],
        "config": cfg.model_dump(mode="json"),
        "audit": audit.model_dump(mode="json"),
        "protocol": {
            "forget_is_fixed": protocol.fixed,
            "targets": len(protocol.pool),
            "forget_size": len(protocol.challenge_forget),
            "pairs": audit.k,
            "challenge_models": audit.n,
            "reference_models": len(plan),
        },
        "cost": {
            "models": total,
            "models_trained_now": trained,
            "models_from_cache": total - trained,
            "model_seconds": model_seconds,
            "wall_seconds": time.perf_counter() - started,
            "executor": getattr(executor, "name", "?"),
        },
        "machine": machine,
        "control": control_check(summary),
        "summary": summary,
    }
    return AuditRun(results, arrays)


def control_check(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Does the exact control pass its own audit? Its U-LiRA AUC interval must cover 0.5 (with
    the permutation interval: its AUC must lie within the null's central range); otherwise
    chance alone separates exact from exact and no verdict of the run can be trusted.
    Its official F is the run's floor: no method can be read below it as "worse than exact"."""
    s = summary.get(CONTROL)
    if s is None:
        return {"method": None, "covers_chance": None, "warning": None}
    ci = s["auc_ci95"]
    covers = bool(ci is not None and ci[0] <= 0.5 <= ci[1])
    return {
        "method": CONTROL,
        "auc": s["auc"],
        "auc_ci95": ci,
        "auc_null95": s.get("auc_null95"),
        "covers_chance": covers,
        "warning": None if covers else CONTROL_WARNING,
        "floor_forgetting_quality_official": s.get("forgetting_quality_official"),
        "floor_forgetting_quality": s.get("forgetting_quality"),
    }


def _ci(pair: tuple[float, float]) -> list[float] | None:
    return None if any(math.isnan(v) for v in pair) else [float(pair[0]), float(pair[1])]


def _score_method(
    protocol: Protocol,
    audit: AuditConfig,
    cache: OutputCache,
    name: str,
    params: dict[str, Any],
    reference: str = REFERENCE,
    reference_params: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """U-LiRA and the challenge score of one method (or ensemble) from its cached outputs,
    against ``reference`` (the retrained model, or the same scheme trained without F)."""

    def load(ids: torch.Tensor, seed: int, role: str) -> dict[str, Any]:
        p = params if role == name else (reference_params or {})
        return cache.load(model_name(ids, seed, role, p))

    pool = protocol.pool.numpy()
    column = {int(i): j for j, i in enumerate(pool)}
    phi_in = np.full((audit.k, pool.size), np.nan)
    phi_out = np.full((audit.k, pool.size), np.nan)
    for k, ids in enumerate(protocol.pair_forget):
        for role, target in ((name, phi_in), (reference, phi_out)):
            out = load(ids, audit.seed + k, role)
            target[k, [column[int(i)] for i in out["ids"]]] = out["phi"]
    llr_in, llr_out = loo_llr(phi_in, phi_out, min_sd=audit.min_sd, variance=audit.variance)
    valid = ~np.isnan(llr_in) & ~np.isnan(llr_out)
    pairs, cols = np.nonzero(valid)
    pos, neg = llr_in[pairs, cols], llr_out[pairs, cols]
    # every interval treats the pair as the sample: the scores of one model move together
    fields = interval_fields(ulira_intervals(phi_in, phi_out, audit))
    entry: dict[str, Any] = {"n_unlearned_pairs": int(pos.size), "n_retrained_pairs": int(neg.size)}
    for label, f in ulira_statistics().items():
        entry[label] = f(pos, neg)
        entry[f"{label}_ci95"] = fields.pop(f"{label}_ci95")
    entry.update(fields)  # the AUC's null range, p-value and verdict
    u_rows, r_rows, acc = [], [], {"ru": [], "rr": [], "tu": [], "tr": []}
    for i in range(audit.n):
        u = load(protocol.challenge_forget, audit.seed + i, name)
        r = load(protocol.challenge_forget, audit.seed + i, reference)
        u_rows.append(u["phi"])
        r_rows.append(r["phi"])
        acc["ru"].append(u["acc_retain"])
        acc["rr"].append(r["acc_retain"])
        acc["tu"].append(u["acc_test"])
        acc["tr"].append(r["acc_test"])
    quality, eps, scores = forgetting_quality(
        np.stack(u_rows),
        np.stack(r_rows),
        delta=audit.delta,
        width=audit.bucket_width,
        rates=audit.rates,
        alpha=audit.alpha,
        cap=audit.epsilon_cap,
        double=audit.thresholds == "single_and_double",
    )
    official, eps_official, scores_official = official_forgetting_quality(
        np.stack(u_rows), np.stack(r_rows), delta=audit.delta
    )
    means = {key: float(np.mean(v)) for key, v in acc.items()}
    ratios = (means["ru"], means["rr"], means["tu"], means["tr"])
    entry.update(
        {
            "forgetting_quality": quality,
            "forgetting_quality_ci95": _ci(
                mean_bootstrap_ci(scores, n_boot=audit.n_boot, seed=audit.seed)
            ),
            "epsilon_mean": float(eps.mean()),
            "epsilon_max": float(eps.max()),
            "retain_acc_unlearned": means["ru"],
            "retain_acc_retrained": means["rr"],
            "test_acc_unlearned": means["tu"],
            "test_acc_retrained": means["tr"],
            "score": challenge_score(quality, *ratios),
            "forgetting_quality_official": official,
            "forgetting_quality_official_ci95": _ci(
                mean_bootstrap_ci(scores_official, n_boot=audit.n_boot, seed=audit.seed)
            ),
            "epsilon_mean_official": float(eps_official.mean()),
            "final_score_official": challenge_score(official, *ratios),
        }
    )
    arrays = {
        "llr_unlearned": llr_in[pairs, cols],
        "llr_retrained": llr_out[pairs, cols],
        "phi_unlearned": phi_in[pairs, cols],
        "phi_retrained": phi_out[pairs, cols],
        "pair": pairs,
        "example_id": pool[cols],
        "challenge_example_id": protocol.challenge_forget.numpy(),
        "epsilon": eps,
        "epsilon_score": scores,
        "epsilon_official": eps_official,
        "epsilon_score_official": scores_official,
    }
    return entry, arrays
