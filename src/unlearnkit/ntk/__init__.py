"""NTK engine: streamed per-sample Jacobians on a parameter subset, primal / dual / CG ridge
solves with a memory guard, and an on-disk state with Woodbury downdates for deletions."""

from unlearnkit.ntk.gram import GramStats, accumulate_gram, stack_jacobian
from unlearnkit.ntk.incremental import (
    delete_samples,
    forget_rows,
    precompute_state,
    state_fingerprint,
)
from unlearnkit.ntk.jacobian import iter_jacobians, per_sample_jacobian, residuals
from unlearnkit.ntk.linearized import LinearizedModel
from unlearnkit.ntk.memory import (
    MemoryBudgetError,
    MemoryEstimate,
    available_memory,
    check_fits,
    choose_solver,
    estimate_memory,
)
from unlearnkit.ntk.params import ParamSpace, state_hash
from unlearnkit.ntk.solvers import solve_cg, solve_dual, solve_primal
from unlearnkit.ntk.state import NTKState

__all__ = [
    "GramStats",
    "LinearizedModel",
    "MemoryBudgetError",
    "MemoryEstimate",
    "NTKState",
    "ParamSpace",
    "accumulate_gram",
    "available_memory",
    "check_fits",
    "choose_solver",
    "delete_samples",
    "estimate_memory",
    "forget_rows",
    "iter_jacobians",
    "per_sample_jacobian",
    "precompute_state",
    "residuals",
    "solve_cg",
    "solve_dual",
    "solve_primal",
    "stack_jacobian",
    "state_fingerprint",
    "state_hash",
]
