"""One audit job: train on D with one seed, unlearn a forget set with each method, retrain
without it (an independent seed), and record every model's output on the forget set. Exact
ensembles (S3T, SISA) are audited as themselves: one trained on D has the forget set deleted
under a deletion policy (``eager``: every touched shard retrained; ``manual``: blocks switched
off only, the millisecond deletion the service performs), and its reference is the same scheme
trained without it.

A job is a plain picklable value and ``run_job`` a top-level function, so the same jobs run in
this process, in worker processes or on Ray (``unlearnkit.runtime.create_executor``). Each
finished model's outputs are cached as one ``.npz`` written by rename, so an interrupted audit
resumes with the models it has not finished.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from unlearnkit.config import ExperimentConfig
from unlearnkit.data import DatasetBundle
from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError, validation_message
from unlearnkit.exact import ENSEMBLES, ShardedEnsemble
from unlearnkit.exact.config import ShardedConfig
from unlearnkit.experiment import unlearning_context
from unlearnkit.methods import create_method
from unlearnkit.metrics.audit_stats import logit_confidence
from unlearnkit.models import create_model, reset_head, select_trainable
from unlearnkit.models.checkpoint import atomic_savez
from unlearnkit.recipe import TrainedModel, starting_model
from unlearnkit.training import accuracy, predict_logits, train

REFERENCE = "retrained"  # the role name of the model retrained without the forget set
REFERENCE_SEED_OFFSET = 100_003  # the retrained model's seed: independent of the original's
# an ensemble's deletion policies the audit knows, and the suffix of their row's name: eager
# retrains every touched shard at once; manual only switches blocks off (no retrain)
POLICY_SUFFIX = {"eager": "", "manual": "-deactivate"}


def reference_role(role: str) -> str:
    """The model a role is scored against: ``retrained`` for a method, ``retrained-s3t`` for
    the S3T ensemble under any policy (the same scheme trained without the forget set)."""
    for scheme in ENSEMBLES.names():
        if role in (ensemble_role(scheme, policy) for policy in POLICY_SUFFIX):
            return f"{REFERENCE}-{scheme}"
    return REFERENCE


def ensemble_role(scheme: str, policy: str) -> str:
    """The row of ``scheme`` deleted under ``policy``: ``s3t`` (eager), ``s3t-deactivate``."""
    return scheme + POLICY_SUFFIX[policy]


def ensemble_config(
    scheme: str, options: dict[str, Any], cfg: ExperimentConfig, seed: int, policy: str = "eager"
) -> ShardedConfig:
    """The scheme's config: the recipe's model, ``options``, this seed, and the deletion
    ``policy`` (``eager``: a deletion retrains every shard it touched, so the ensemble never saw
    the data; ``manual``: the touched blocks are switched off and nothing is retrained)."""
    values = {
        "model": cfg.model,
        "model_options": dict(cfg.model_options),
        **options,
        "seed": seed,
        "retrain_policy": policy,
    }
    try:
        return ENSEMBLES.get(scheme).config_type(**values)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise UnlearnkitError(f"audit ensemble {scheme}: {validation_message(exc)}") from None


def ids_hash(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:12]


def params_hash(params: dict[str, Any]) -> str:
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class AuditJob:
    """Models of one (forget set, seed): the unlearned ones per method, the retrained one."""

    forget_ids: torch.Tensor
    seed: int
    methods: list[tuple[str, dict[str, Any]]]  # the ones still to run
    reference: bool  # the retrained model is still to run
    cfg: ExperimentConfig
    bundle: DatasetBundle
    start_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    ensembles: list[tuple[str, str]] = field(default_factory=list)  # (scheme, policy) to run
    ensemble_references: list[str] = field(default_factory=list)  # trained without F: to run
    ensemble_options: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return (
            len(self.methods)
            + int(self.reference)
            + len(self.ensembles)
            + len(self.ensemble_references)
        )


def model_name(forget_ids: torch.Tensor, seed: int, role: str, params: dict[str, Any]) -> str:
    """The cache file's name: forget set, seed, role (method or ``retrained``) and its params."""
    return f"{ids_hash(forget_ids)}-s{seed}-{role}-{params_hash(params)}"


def _start(job: AuditJob, seed: int) -> nn.Module:
    """w0 for ``seed``: the shared pretrained backbone with a new head, or the full recipe."""
    if job.start_state is None:
        return starting_model(job.cfg, job.bundle, seed)
    b = job.bundle
    model = create_model(
        job.cfg.model, b.num_classes, b.in_chans, b.image_size, **job.cfg.model_options
    )
    model.load_state_dict(job.start_state)
    reset_head(model, seed)
    return model


def _train_on(job: AuditJob, split: ArraySplit, seed: int) -> TrainedModel:
    """The recipe's training on ``split`` from w0(seed): PEFT parameters only."""
    model = _start(job, seed)
    trainable = select_trainable(model, job.cfg.peft)
    initial = copy.deepcopy(model.state_dict())
    train(model, split, job.cfg.train.model_copy(update={"seed": seed}), trainable)
    return TrainedModel(model, initial, trainable, seed)


def _outputs(model: nn.Module, forget: ArraySplit, retain: ArraySplit, test: ArraySplit) -> dict:
    logits = predict_logits(model, forget).numpy()
    return {
        "ids": forget.ids.numpy(),
        "phi": logit_confidence(logits, forget.y.numpy()),
        "acc_retain": accuracy(model, retain),
        "acc_test": accuracy(model, test),
    }


def _ensemble_on(job: AuditJob, scheme: str, split: ArraySplit, seed: int) -> ShardedEnsemble:
    """The scheme trained on ``split`` with ``seed``, its blocks on the shared frozen backbone
    (or, without one, the recipe's starting model for this seed)."""
    backbone = job.start_state
    if backbone is None:
        backbone = starting_model(job.cfg, job.bundle, seed).state_dict()
    config = ensemble_config(scheme, job.ensemble_options, job.cfg, seed)
    return ENSEMBLES.get(scheme).train(  # type: ignore[attr-defined]
        split, config, num_classes=job.bundle.num_classes, backbone_state=backbone
    )


def _ensemble_outputs(
    ensemble: ShardedEnsemble, forget: ArraySplit, retain: ArraySplit, test: ArraySplit
) -> dict:
    logits = ensemble.predict_logits(forget).numpy()
    return {
        "ids": forget.ids.numpy(),
        "phi": logit_confidence(logits, forget.y.numpy()),
        "acc_retain": ensemble.accuracy(retain),
        "acc_test": ensemble.accuracy(test),
    }


def run_job(job: AuditJob) -> list[dict[str, Any]]:
    """Train what the job still needs; one result per model (name, outputs, seconds)."""
    train_split = job.bundle.train
    forget = train_split.select_ids(job.forget_ids)
    retain = train_split.drop_ids(job.forget_ids)
    results = []
    if job.reference:
        start = time.perf_counter()
        ref_seed = job.seed + REFERENCE_SEED_OFFSET
        retrained = _train_on(job, retain, ref_seed)
        results.append(
            {
                "name": model_name(job.forget_ids, job.seed, REFERENCE, {}),
                **_outputs(retrained.model, forget, retain, job.bundle.test),
                "seconds": time.perf_counter() - start,
            }
        )
    if job.methods:
        start = time.perf_counter()
        original = _train_on(job, train_split, job.seed)
        original_seconds = time.perf_counter() - start
        base = unlearning_context(job.cfg, job.bundle, original, job.forget_ids, job.seed)
        for name, params in job.methods:
            start = time.perf_counter()
            ctx = copy.copy(base)
            ctx.model = copy.deepcopy(original.model)
            unlearned = create_method(name, **params).run(ctx)  # with the BatchNorm policy
            results.append(
                {
                    "name": model_name(job.forget_ids, job.seed, name, params),
                    **_outputs(unlearned, forget, retain, job.bundle.test),
                    # the original's training is shared; each model carries its share
                    "seconds": time.perf_counter() - start + original_seconds / len(job.methods),
                }
            )
    options = job.ensemble_options
    trained: dict[str, tuple[ShardedEnsemble, float]] = {}
    for scheme, policy in job.ensembles:  # trained on D (once per scheme), then deleted
        if scheme not in trained:
            start = time.perf_counter()
            trained[scheme] = (
                _ensemble_on(job, scheme, train_split, job.seed),
                time.perf_counter() - start,
            )
        start = time.perf_counter()
        ensemble = copy.deepcopy(trained[scheme][0])
        ensemble.config = ensemble.config.model_copy(update={"retrain_policy": policy})
        ensemble.delete(job.forget_ids.tolist())
        if not ensemble.serving_plan():
            raise UnlearnkitError(
                f"audit: deleting the {len(forget)} forget samples from {scheme} with the "
                f"{policy} policy left every shard dead; audit that policy on a smaller forget set"
            )
        role = ensemble_role(scheme, policy)
        results.append(
            {
                "name": model_name(job.forget_ids, job.seed, role, options),
                **_ensemble_outputs(ensemble, forget, retain, job.bundle.test),
                "seconds": time.perf_counter() - start + trained[scheme][1],
            }
        )
    for scheme in job.ensemble_references:  # the same scheme, never shown the forget set
        start = time.perf_counter()
        ensemble = _ensemble_on(job, scheme, retain, job.seed + REFERENCE_SEED_OFFSET)
        results.append(
            {
                "name": model_name(job.forget_ids, job.seed, reference_role(scheme), options),
                **_ensemble_outputs(ensemble, forget, retain, job.bundle.test),
                "seconds": time.perf_counter() - start,
            }
        )
    return results


class OutputCache:
    """``DIR/<name>.npz`` per finished model, written by rename so none is half-written."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.npz"

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def save(self, result: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_savez(
            self.path(result["name"]),
            ids=result["ids"],
            phi=result["phi"],
            acc_retain=np.float64(result["acc_retain"]),
            acc_test=np.float64(result["acc_test"]),
            seconds=np.float64(result["seconds"]),
        )

    def load(self, name: str) -> dict[str, Any]:
        with np.load(self.path(name)) as f:
            return {
                "name": name,
                "ids": f["ids"],
                "phi": f["phi"],
                "acc_retain": float(f["acc_retain"]),
                "acc_test": float(f["acc_test"]),
                "seconds": float(f["seconds"]),
            }
