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
BatchNorm statistics: paper mode recomputes the original's (computed on D, D_f included) on D_r
unless the policy is ``frozen``; the linearized model keeps w0's (pre-training, never D).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from unlearnkit.data.base import ArraySplit, concat_splits
from unlearnkit.errors import ConflictError
from unlearnkit.methods.base import UnlearningContext, UnlearningMethod, register_method
from unlearnkit.methods.ntk import NTKParams, finish_ntk_batchnorm, ntk_unlearn
from unlearnkit.ntk.deployment import unlearned_model
from unlearnkit.ntk.incremental import precompute_state_file, state_fingerprint
from unlearnkit.ntk.state import NTKState
from unlearnkit.ntk.update import solutions_from_state

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
        if p.state_path is None:
            return ntk_unlearn(ctx, ctx.trainable, p, kernel=p.kernel)
        state = self._state(ctx, Path(p.state_path))
        sol = solutions_from_state(ctx.model, state, ctx.initial_state, ctx.forget)
        return unlearned_model(ctx.model, ctx.trainable, ctx.initial_state, sol, p.mode, p.scale)

    def finish_batchnorm(self, model: nn.Module, ctx: UnlearningContext) -> nn.Module:
        """Paper mode's statistics (computed on D, D_f included) recomputed on D_r unless the
        policy is ``frozen``; the linearized model keeps w0's (``finish_ntk_batchnorm``)."""
        return finish_ntk_batchnorm(model, ctx, self.params.mode)

    def _state(self, ctx: UnlearningContext, path: Path) -> NTKState:
        """Load the state of D (checked against w0, names, lambda and D's ids) or make it."""
        p = self.params
        data = merge_by_id(ctx.retain, ctx.forget)
        expect = state_fingerprint(ctx.initial_state, ctx.trainable, data.fingerprint(), p.lam)
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
                budget=None if p.max_memory_gb is None else int(p.max_memory_gb * 2**30),
                kernel=p.kernel,
                workers=p.workers,
                executor=p.executor,
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
