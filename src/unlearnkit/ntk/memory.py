"""Memory estimates for NTK solves, and a refusal before a solve that would not fit.

A P x P Gram in float64 at P = 1e5 is 80 GB; a dual kernel over 5,000 images x 10 classes is
20 GB. Estimating first and refusing with a clear message beats an out-of-memory kill.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import UnlearnkitError
from unlearnkit.runtime.device import current_runtime

GIB = 2**30


class MemoryBudgetError(UnlearnkitError):
    """The requested NTK solve needs more memory than this machine has available."""


def host_memory() -> int:
    """Bytes the OS says can still be allocated (MemAvailable); a large value if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 50


def available_memory() -> int:
    """The budget of an NTK solve: host memory, and on a CUDA runtime also the GPU's free
    memory (the Jacobian chunks and the float64 accumulator live there, the factorisation on
    the host), so the smaller of the two: an estimate that fits both places is safe."""
    free = current_runtime().free_memory()
    host = host_memory()
    return host if free is None else min(host, free)


@dataclass(frozen=True)
class MemoryEstimate:
    solver: str
    bytes: int

    @property
    def gib(self) -> float:
        return self.bytes / GIB


def jacobian_chunk_bytes(chunk: int, num_classes: int, p: int, item: int = 4) -> int:
    """One streamed chunk: J (chunk x C x P) plus autograd work space (a factor of 3)."""
    return 3 * chunk * num_classes * p * item


def estimate_memory(
    solver: str, p: int, rows: int, num_classes: int, chunk: int = 64, dtype_bytes: int = 8
) -> MemoryEstimate:
    """Peak bytes of one solve. ``rows`` = |S| * C (Jacobian rows of the set being solved)."""
    jac = jacobian_chunk_bytes(chunk, num_classes, p)
    if solver == "primal":  # Gram A, its inverse (or factor), one temporary P x P
        need = 3 * p * p * dtype_bytes + jac
    elif solver == "dual":  # the stored Jacobian (float32), kernel + factor, retain kernel
        block = min(rows, 2048)  # one row block of J in float64 while forming J J^T
        need = rows * p * 4 + 3 * rows * rows * dtype_bytes + block * p * dtype_bytes + jac
    elif solver == "cg":  # a handful of P-vectors + one chunk
        need = 8 * p * dtype_bytes + jac
    else:
        raise UnlearnkitError(f"unknown NTK solver {solver!r}; choose primal, dual, cg or auto")
    return MemoryEstimate(solver, int(need))


def precompute_memory(
    p: int, rows: int, num_classes: int, chunk: int = 64, pool_workers: int = 0
) -> MemoryEstimate:
    """The state precompute: the primal solve's peak in this process plus, for a local pool,
    each worker's float64 accumulator, float32 product buffer and Jacobian chunk."""
    base = estimate_memory("primal", p, rows, num_classes, chunk)
    worker = 12 * p * p + jacobian_chunk_bytes(chunk, num_classes, p)
    return MemoryEstimate("primal", base.bytes + pool_workers * worker)


SOLVE_WAYS_OUT = "use fewer trainable parameters (--peft), fewer samples, or solver='cg'"


def check_fits(
    est: MemoryEstimate,
    budget: int | None = None,
    what: str = "NTK solve",
    ways_out: str = SOLVE_WAYS_OUT,
) -> None:
    """Raise MemoryBudgetError (nothing allocated yet) when ``est`` exceeds the budget."""
    budget = available_memory() if budget is None else budget
    if est.bytes > budget:
        raise MemoryBudgetError(
            f"{what} with the {est.solver} solver needs about {est.gib:.1f} GiB but only "
            f"{budget / GIB:.1f} GiB is available; {ways_out}"
        )


def check_state_fits(est: MemoryEstimate, p: int, budget: int | None = None) -> None:
    """Refuse an NTK state (primal: P x P float64 matrices) that cannot fit, before any work,
    with the size of one matrix and what would make it fit. A ResNet-50 in ``norm`` mode has
    P = 73,610: one P x P float64 matrix is 43.3 GB (40.4 GiB), and the precompute holds three.
    The pseudo-NTK is no way out here: it saves Jacobian work (one row per sample, not C), but
    its state is the same P x P matrix."""
    one = p * p * 8
    check_fits(
        est,
        budget,
        what=(
            f"an NTK state over P = {p:,} trainable parameters (one P x P float64 matrix is "
            f"{one / GIB:.1f} GiB = {one / 1e9:.1f} GB)"
        ),
        ways_out=(
            "ways out: fewer trainable parameters (a smaller --peft mode or set; the state "
            f"grows as P^2), a machine with {est.gib:.1f} GiB free, or Fast-NTK without a "
            "state file (solver cg keeps no P x P matrix; the pseudo-NTK state is P x P too)"
        ),
    )


def choose_solver(
    p: int, rows: int, num_classes: int, chunk: int = 64, budget: int | None = None
) -> MemoryEstimate:
    """The cheaper exact form that fits (primal if P <= rows, else dual), else matrix-free CG."""
    budget = available_memory() if budget is None else budget
    order = ["primal", "dual"] if p <= rows else ["dual", "primal"]
    for solver in [*order, "cg"]:
        est = estimate_memory(solver, p, rows, num_classes, chunk)
        if est.bytes <= budget:
            return est
    est = estimate_memory("cg", p, rows, num_classes, chunk)
    check_fits(est, budget)
    return est
