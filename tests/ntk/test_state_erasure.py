"""An NTK state saved after deletions leaves out w_D - w0 (a function of the deleted samples)
unless the paper update, which needs it, asks to keep it."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.ntk.deployment import state_solutions
from unlearnkit.ntk.state import NTKState
from unlearnkit.ntk.update import apply_paper_update


def _state() -> NTKState:
    gen = torch.Generator().manual_seed(0)
    j = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    return NTKState.from_gram(
        ["weight"], [[5]], j.T @ j, j.T @ torch.randn(12, generator=gen, dtype=torch.float64),
        0.5, 2, torch.arange(6), {"w0": "a"},
    )  # fmt: skip


def _keys(path) -> set[str]:
    with safe_open(str(path), "pt") as fh:
        return set(fh.keys())


def test_full_solution_is_dropped_after_deletions_only(tmp_path) -> None:
    state = _state()
    state.save(tmp_path / "fresh.safetensors", keep_full=False)  # nothing deleted: kept
    assert "solution_full" in _keys(tmp_path / "fresh.safetensors")
    state.alive[2] = False
    state.save(tmp_path / "kept.safetensors")  # the default keeps it (paper update)
    assert "solution_full" in _keys(tmp_path / "kept.safetensors")
    state.save(tmp_path / "erased.safetensors", keep_full=False)
    assert "solution_full" not in _keys(tmp_path / "erased.safetensors")
    back = NTKState.load(tmp_path / "erased.safetensors")
    assert back.solution_full is None and torch.allclose(back.solution, state.solution)
    model = nn.Linear(5, 1, bias=False)
    with pytest.raises(UnlearnkitError, match="no longer holds w_D - w0"):
        apply_paper_update(model, ["weight"], {"weight": torch.zeros(1, 5)}, state_solutions(back))
