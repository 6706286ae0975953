"""NTK engine: batched Jacobians on a parameter subset (analytic head, per-sample BatchNorm and
prompt gradients from one backward per class), primal / dual / CG ridge solves with a memory
guard, a sharded, parallel (process pool or Ray) and resumable precompute of the state, the
pseudo-NTK as an opt-in approximation, a cost model, and Woodbury downdates for deletions."""

from unlearnkit.ntk.cost import PrecomputeCost, gemm_flops_per_s, precompute_cost
from unlearnkit.ntk.gram import GramAccumulator, GramStats, accumulate_gram, stack_jacobian
from unlearnkit.ntk.incremental import (
    delete_samples,
    forget_rows,
    precompute_state,
    precompute_state_file,
    state_fingerprint,
)
from unlearnkit.ntk.jacobian import (
    KERNELS,
    batched_jacobian,
    iter_jacobians,
    per_sample_jacobian,
    reference_jacobian,
    residuals,
)
from unlearnkit.ntk.linearized import LinearizedModel, PseudoLinearizedModel
from unlearnkit.ntk.memory import (
    MemoryBudgetError,
    MemoryEstimate,
    available_memory,
    check_fits,
    choose_solver,
    estimate_memory,
)
from unlearnkit.ntk.params import ParamSpace, state_hash
from unlearnkit.ntk.precompute import PrecomputeIncomplete, cache_dir_for, compute_gram
from unlearnkit.ntk.solvers import solve_cg, solve_dual, solve_primal
from unlearnkit.ntk.state import NTKState

__all__ = [
    "KERNELS",
    "GramAccumulator",
    "GramStats",
    "LinearizedModel",
    "MemoryBudgetError",
    "MemoryEstimate",
    "NTKState",
    "ParamSpace",
    "PrecomputeCost",
    "PrecomputeIncomplete",
    "PseudoLinearizedModel",
    "accumulate_gram",
    "available_memory",
    "batched_jacobian",
    "cache_dir_for",
    "check_fits",
    "choose_solver",
    "compute_gram",
    "delete_samples",
    "estimate_memory",
    "forget_rows",
    "gemm_flops_per_s",
    "iter_jacobians",
    "per_sample_jacobian",
    "precompute_cost",
    "precompute_state",
    "precompute_state_file",
    "reference_jacobian",
    "residuals",
    "solve_cg",
    "solve_dual",
    "solve_primal",
    "stack_jacobian",
    "state_fingerprint",
    "state_hash",
]
