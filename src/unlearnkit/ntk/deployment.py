"""From an NTK state to the model that is served or returned: one place for every caller.

The ``fast_ntk`` and ``ntk`` methods, ``unlearnkit ntk`` and the service's approximate mode all
turn ridge solutions into a model here, and open the on-disk state of a trained model here, so
the linearized-vs-paper choice and the staleness check have one definition.

- ``linearized``: serve f(x; w0) + J(x) (w_Dr - w0), the linearized model retrained on D_r in
  closed form (exact with respect to that model);
- ``paper``: w_unlearned = w_trained + s (w_Dr - w_D) on the real trained weights, with the
  angle-based scale of the NTK forgetting code (``scale="angle"``) or s = 1 (``"none"``).

Output scale (docs/fast_ntk.md, "Output scale"): the ridge fit's targets are one-hot or
s (onehot - 1/C) (recorded in the state, ``target_scale``), and ``calibrate`` divides a
linearized model's logits by a temperature fitted on D_r (refitted after every deletion, so it
never depends on deleted data).

A pseudo-NTK state (``kernel="pntk"``, approximate) serves its kernel machine in ``linearized``
mode (``PseudoLinearizedModel``); ``paper`` mode needs the exact NTK and is refused. Receipts and
served checkpoints of such a state carry ``receipt_kind(...)``, which says ``pntk``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.metrics.calibration import fit_temperature
from unlearnkit.ntk.incremental import state_fingerprint
from unlearnkit.ntk.linearized import LinearizedModel
from unlearnkit.ntk.state import NTKState
from unlearnkit.ntk.update import Solutions, apply_paper_update, linearized_model
from unlearnkit.registry import Registry
from unlearnkit.training import predict_logits

STATE_FILE = "ntk_state.safetensors"
SCALES = ("angle", "none")
TEMPERATURES = ("none", "fit")  # served logits as fitted, or / a temperature fitted on D_r
TARGETS = ("onehot", "scaled")


def target_value(target: str, target_scale: float) -> float | None:
    """The engine's ``target_scale`` of a user's choice: None for ``onehot``, s for ``scaled``."""
    if target not in TARGETS:
        raise UnlearnkitError(f"unknown NTK target {target!r}; choose one of: {', '.join(TARGETS)}")
    if target == "scaled" and not target_scale > 0:
        raise UnlearnkitError(f"the target scale must be > 0, got {target_scale}")
    return None if target == "onehot" else float(target_scale)


Update = Callable[[nn.Module, list[str], Mapping[str, torch.Tensor], Solutions, str], nn.Module]
NTK_UPDATES: Registry[nn.Module] = Registry("NTK update mode")


@NTK_UPDATES.register("linearized")
def _linearized(
    model: nn.Module, names: list[str], w0: Mapping[str, torch.Tensor], sol: Solutions, scale: str
) -> nn.Module:
    return linearized_model(model, names, w0, sol.retain)


@NTK_UPDATES.register("paper")
def _paper(
    model: nn.Module, names: list[str], w0: Mapping[str, torch.Tensor], sol: Solutions, scale: str
) -> nn.Module:
    apply_paper_update(model, names, w0, sol, scale)
    return model


def check_update(mode: str, scale: str = "angle") -> None:
    """Refuse an unknown update mode or scale before any work."""
    NTK_UPDATES.get(mode)
    if scale not in SCALES:
        raise UnlearnkitError(f"unknown NTK scale {scale!r}; choose one of: {', '.join(SCALES)}")


def unlearned_model(
    model: nn.Module,
    names: list[str],
    w0: Mapping[str, torch.Tensor],
    sol: Solutions,
    mode: str = "linearized",
    scale: str = "angle",
) -> nn.Module:
    """The model the solutions describe. ``paper`` changes ``model`` in place and returns it;
    ``linearized`` returns a new module and leaves ``model`` as it is."""
    check_update(mode, scale)
    return NTK_UPDATES.get(mode)(model, names, w0, sol, scale)


def calibrate(model: nn.Module, retain: ArraySplit, temperature: str = "fit") -> float:
    """``fit``: set a linearized model's temperature to the one that maximises the likelihood
    of D_r (its own training data: a function of the solution and D_r only); ``none``: 1.
    Returns it. A model without a ``temperature`` (the paper's update) is left as it is."""
    if temperature not in TEMPERATURES:
        raise UnlearnkitError(
            f"unknown temperature {temperature!r}; choose one of: {', '.join(TEMPERATURES)}"
        )
    if not isinstance(model, LinearizedModel):
        return 1.0
    model.temperature = 1.0
    if temperature == "fit" and len(retain) > 0:
        model.temperature = fit_temperature(predict_logits(model, retain), retain.y)
    return model.temperature


def state_solutions(state: NTKState) -> Solutions:
    """The two solutions a state holds: on all of D and on the samples still alive."""
    return Solutions(state.solution_full, state.solution, "primal (incremental)", state.kernel)


def receipt_kind(kind: str, state: NTKState) -> str:
    """A receipt's or served checkpoint's ``kind``, marked when the state is approximate:
    ``ntk_downdate`` stays as it is for the exact NTK, ``ntk_downdate-pntk`` for the pseudo-NTK."""
    return kind if state.kernel == "exact" else f"{kind}-{state.kernel}"


def open_state(
    path: Path,
    initial_state: Mapping[str, torch.Tensor],
    trainable: list[str],
    data_fingerprint: str,
    model_dir: Path | None = None,
) -> NTKState:
    """Load the NTK state of a trained model, refusing one made for other w0, names or data."""
    path = Path(path)
    if not path.is_file():
        source = model_dir if model_dir is not None else path.parent
        raise UnlearnkitError(
            f"{path.parent} has no {path.name}: run `unlearnkit ntk precompute --from {source}` "
            "first"
        )
    state = NTKState.load(path)
    expect = state_fingerprint(
        initial_state, trainable, data_fingerprint, state.lam, state.target_scale
    )
    state.check(expect, path)
    return state
