"""NTK forgetting (Golatkar et al. 2020) on *all* parameters: the small-scale baseline Fast-NTK
improves on. Dual form by default ((N C) x (N C) kernel); a solve that would not fit in memory
is refused with a clear message (MemoryBudgetError) before any work is done."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from unlearnkit.methods.base import UnlearningContext, UnlearningMethod, register_method
from unlearnkit.methods.batchnorm import recompute_bn_statistics
from unlearnkit.ntk.deployment import unlearned_model
from unlearnkit.ntk.jacobian import Kernel
from unlearnkit.ntk.update import ridge_solutions


class NTKParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lam: float = Field(1.0, gt=0, description="ridge lambda of the linearized solve")
    solver: Literal["auto", "primal", "dual", "cg"] = "dual"
    mode: Literal["paper", "linearized"] = "paper"
    scale: Literal["angle", "none"] = "angle"
    chunk_size: int = Field(32, ge=1, le=4096)
    max_memory_gb: float | None = Field(None, gt=0, description="memory budget (default: free)")

    @property
    def budget_bytes(self) -> int | None:
        """``max_memory_gb`` in bytes (None: the free memory decides)."""
        return None if self.max_memory_gb is None else int(self.max_memory_gb * 2**30)


def ntk_unlearn(
    ctx: UnlearningContext,
    names: list[str],
    params: BaseModel,
    kernel: Kernel = "exact",
    target_scale: float | None = None,
) -> nn.Module:
    """Shared by ntk and fast_ntk: solve on D and D_r, then the paper update or the linear model.
    ``kernel="pntk"`` (fast_ntk only, approximate) solves with the pseudo-NTK;
    ``target_scale`` (fast_ntk's ``target="scaled"``) fits s (onehot - 1/C) instead of one-hot."""
    p = params
    sol = ridge_solutions(
        ctx.model,
        names,
        ctx.initial_state,
        ctx.retain,
        ctx.forget,
        ctx.num_classes,
        p.lam,
        p.solver,
        p.chunk_size,
        p.max_memory_gb,
        kernel=kernel,
        target_scale=target_scale,
    )
    return unlearned_model(ctx.model, names, ctx.initial_state, sol, p.mode, p.scale)


def finish_ntk_batchnorm(model: nn.Module, ctx: UnlearningContext, mode: str) -> nn.Module:
    """BatchNorm statistics after an NTK update (no train-mode pass ever ran):

    - ``linearized``: the linearization point's statistics (w0: pre-training, never D) under
      every policy; recomputing them would move the point the NTK state was built at;
    - ``paper``: the trained model's statistics were computed on all of D, D_f included, so
      they are recomputed on D_r under ``updated`` and ``recompute``; ``frozen`` keeps the
      original's, as it does for every method."""
    if mode == "paper" and ctx.bn_mode != "frozen":
        recompute_bn_statistics(model, ctx.retain)
    return model


@register_method
class NTK(UnlearningMethod):
    name = "ntk"
    Params = NTKParams
    summary = "full-model NTK one-shot update (all parameters, dual form; small models only)"
    in_default_run = False  # minutes and GBs even on digits: run it by name

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        names = [n for n, _ in ctx.model.named_parameters()]
        return ntk_unlearn(ctx, names, self.params)

    def finish_batchnorm(self, model: nn.Module, ctx: UnlearningContext) -> nn.Module:
        return finish_ntk_batchnorm(model, ctx, self.params.mode)
