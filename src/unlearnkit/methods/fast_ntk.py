"""Fast-NTK (Li et al. 2023): NTK one-shot unlearning restricted to the PEFT parameters
(BatchNorm affine + head for CNNs, every normalisation layer's affine + head with ``norm``,
visual prompts + head for ViTs).

Default mode is ``linearized`` because it is the one that forgets: on digits class-forget the
paper's weight update on the nonlinearly trained model keeps most of the forget class (see
docs/algorithms.md §1.4 and results/fast_ntk/report.md); the linearized model retrained in
closed form on D_r matches retrain. ``mode="paper"`` gives the paper's update with the angle
scale. With ``state_path`` the Gram of D is computed once, saved, and later calls only pay for
the Jacobian of D_f plus a Woodbury downdate; that precompute runs on ``workers`` processes (or
Ray tasks) and resumes from the shard cache next to the state after an interruption.
``kernel="pntk"`` uses the pseudo-NTK instead (approximate, opt-in; linearized mode only).
Output scale: the ridge fit regresses onto s (onehot - 1/C) with s = 10 (``target``,
``target_scale``), so the linearized model's logits and softmax are on a cross-entropy model's
scale (one-hot targets give a nearly flat softmax); ``temperature="fit"`` and ``noise`` are
options, measured in docs/fast_ntk.md. Each keeps the deletion exact within the class.
BatchNorm statistics: paper mode recomputes the original's (computed on D, D_f included) on D_r
unless the policy is ``frozen``; the linearized model keeps w0's (pre-training, never D).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from unlearnkit.data.base import ArraySplit, concat_splits
from unlearnkit.errors import ConflictError
from unlearnkit.methods.base import UnlearningContext, UnlearningMethod, register_method
from unlearnkit.methods.ntk import NTKParams, finish_ntk_batchnorm, ntk_unlearn
from unlearnkit.ntk.deployment import calibrate, unlearned_model
from unlearnkit.ntk.incremental import precompute_state, precompute_state_file, state_fingerprint
from unlearnkit.ntk.state import NTKState
from unlearnkit.ntk.update import posterior_sample, solutions_from_state

PEFT_MODES = ("bn", "norm", "prompts")


class FastNTKParams(NTKParams):
    lam: float = Field(0.1, gt=0, description="ridge lambda of the linearized solve")
    solver: Literal["auto", "primal", "dual", "cg"] = "auto"
    mode: Literal["paper", "linearized"] = "linearized"
    chunk_size: int = Field(64, ge=1, le=4096)
    state_path: str | None = Field(None, description="NTK state file of D (made if missing)")
    kernel: Literal["exact", "pntk"] = Field(
        "exact", description="exact NTK, or the pseudo-NTK (approximate: one row per sample)"
    )
    workers: int = Field(1, ge=1, le=1024, description="processes / Ray tasks of the precompute")
    executor: Literal["local", "ray"] = "local"
    target: Literal["onehot", "scaled"] = Field(
        "scaled",
        description="ridge targets: target_scale x (onehot - 1/C) (logits on a cross-entropy "
        "model's scale; the default, chosen by measurement: docs/fast_ntk.md, Output scale), or "
        "one-hot (logits on a 0-1 scale, a nearly flat softmax)",
    )
    target_scale: float = Field(10.0, gt=0, le=1000, description="s of target=scaled")
    temperature: Literal["none", "fit"] = Field(
        "none", description="divide the linearized model's logits by a temperature fitted on D_r"
    )
    noise: float = Field(
        0.0,
        ge=0,
        le=100,
        description="linearized mode: add Gaussian noise of covariance noise^2 (A_Dr + lam I)^-1 "
        "(Golatkar et al. 2020), seeded by the run's seed",
    )

    @model_validator(mode="after")
    def _noise_is_for_the_linearized_model(self) -> FastNTKParams:
        if self.noise > 0 and self.mode != "linearized":
            raise ValueError("noise applies to mode 'linearized' only")
        return self

    @property
    def target_value(self) -> float | None:
        """The engine's ``target_scale``: None for one-hot targets."""
        return None if self.target == "onehot" else self.target_scale


def merge_by_id(a: ArraySplit, b: ArraySplit) -> ArraySplit:
    """D = D_r + D_f in id order (the order the training split had)."""
    both = concat_splits(a, b)  # an index view of the one data set, no pixel copied
    return both.subset(torch.argsort(both.ids))


@register_method
class FastNTK(UnlearningMethod):
    name = "fast_ntk"
    Params = FastNTKParams
    summary = "NTK one-shot unlearning on the PEFT parameters only (norm layers or prompts)"
    trainable_modes = PEFT_MODES
    trainable_hint = "use method 'ntk' for all parameters"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        self.check_trainable(ctx.peft)  # the Python API bypasses ExperimentConfig's check
        p = self.params
        if p.state_path is None and p.noise == 0:
            model = ntk_unlearn(ctx, ctx.trainable, p, kernel=p.kernel, target_scale=p.target_value)
        else:  # the noise needs (A_Dr + lam I)^-1: the state's, downdated by D_f
            state = self._state(ctx, Path(p.state_path)) if p.state_path else self._fresh(ctx)
            sol = solutions_from_state(ctx.model, state, ctx.initial_state, ctx.forget)
            if p.noise > 0:
                noisy = posterior_sample(sol.retain, state.inverse, p.noise, ctx.seed)
                sol = replace(sol, retain=noisy)
            model = unlearned_model(
                ctx.model, ctx.trainable, ctx.initial_state, sol, p.mode, p.scale
            )
        calibrate(model, ctx.retain, p.temperature)  # on D_r only: after the deletion
        return model

    def finish_batchnorm(self, model: nn.Module, ctx: UnlearningContext) -> nn.Module:
        """Paper mode's statistics (computed on D, D_f included) recomputed on D_r unless the
        policy is ``frozen``; the linearized model keeps w0's (``finish_ntk_batchnorm``)."""
        return finish_ntk_batchnorm(model, ctx, self.params.mode)

    def _fresh(self, ctx: UnlearningContext) -> NTKState:
        """The state of D in memory (for the noise, when no state file is given)."""
        p = self.params
        return precompute_state(
            ctx.model,
            ctx.trainable,
            ctx.initial_state,
            merge_by_id(ctx.retain, ctx.forget),
            ctx.num_classes,
            p.lam,
            p.chunk_size,
            budget=p.budget_bytes,
            kernel=p.kernel,
            target_scale=p.target_value,
        )

    def _state(self, ctx: UnlearningContext, path: Path) -> NTKState:
        """Load the state of D (checked against w0, names, lambda and D's ids) or make it."""
        p = self.params
        data = merge_by_id(ctx.retain, ctx.forget)
        expect = state_fingerprint(
            ctx.initial_state, ctx.trainable, data.fingerprint(), p.lam, p.target_value
        )
        if not path.is_file():
            return precompute_state_file(
                path,
                ctx.model,
                ctx.trainable,
                ctx.initial_state,
                data,
                ctx.num_classes,
                p.lam,
                p.chunk_size,
                budget=p.budget_bytes,
                kernel=p.kernel,
                workers=p.workers,
                executor=p.executor,
                target_scale=p.target_value,
            )
        state = NTKState.load(path)
        if state.kernel != p.kernel:
            raise ConflictError(
                f"NTK state {path} holds the {state.kernel!r} kernel but {p.kernel!r} was asked; "
                "remove it or pass the matching kernel"
            )
        untouched = bool(state.alive.all())  # D itself can only be checked before deletions
        fields = {k: v for k, v in expect.items() if k != "data" or untouched}
        state.check(fields, path)
        if not torch.equal(state.live_ids.sort().values, data.ids):
            raise ConflictError(
                f"NTK state {path} is stale: its live samples are not D_r + D_f of this request"
            )
        return state
