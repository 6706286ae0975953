"""The pseudo-NTK (approximate, opt-in): its kernel error against the exact NTK, its state and
served kernel machine, and how the method, the state file and the CLI record it."""

from __future__ import annotations

import copy

import pytest
import torch
from ntk_helpers import FrozenFeatures, perturbed_bn, rel, w0_of

import unlearnkit.methods.fast_ntk  # noqa: F401 - registers fast_ntk
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.models import create_model, select_trainable
from unlearnkit.ntk import (
    LinearizedModel,
    NTKState,
    ParamSpace,
    PseudoLinearizedModel,
    batched_jacobian,
    delete_samples,
    precompute_state,
)
from unlearnkit.ntk.deployment import receipt_kind, state_solutions, unlearned_model
from unlearnkit.training import TrainConfig


# -- the pseudo-NTK ------------------------------------------------------------------------------
def test_pntk_kernel_error_against_the_exact_ntk():
    torch.manual_seed(0)
    model = perturbed_bn(create_model("smallcnn", 5, 1, 8, width=8))
    space = ParamSpace.from_model(model, select_trainable(model, "bn"))
    x = torch.randn(16, 1, 8, 8)
    jac, _ = batched_jacobian(model, space, x)
    rows, _ = batched_jacobian(model, space, x, kernel="pntk")
    n, c, p = jac.shape
    exact = jac.reshape(n * c, p).double() @ jac.reshape(n * c, p).double().T
    pseudo = torch.kron(rows.double() @ rows.double().T, torch.eye(c, dtype=torch.float64))
    err = float((exact - pseudo).norm() / exact.norm())
    head = space.names.index("head.weight")
    off = sum(space.sizes[:head])
    blocks = jac[..., off:].reshape(n * c, -1).double()  # head weight + bias columns
    head_rows = rows[:, off:].double()
    head_err = float(
        (blocks @ blocks.T - torch.kron(head_rows @ head_rows.T, torch.eye(c))).norm()
        / (blocks @ blocks.T).norm()
    )
    print(f"\npNTK (x) I_C vs eNTK, smallcnn w8 + bn (P={p}): relative Frobenius error {err:.3f}")
    assert 1e-3 < err < 0.5  # an approximation, and a fair one
    assert head_err < 1e-6  # exact on the linear readout (float32 rows): d f_c / d W = phi e_c


def test_pntk_state_downdate_matches_recompute_and_serves_the_kernel_machine(tiny, tmp_path):
    model, data, names = tiny
    w0 = w0_of(model)
    state = precompute_state(model, names, w0, data, 3, 0.05, chunk_size=6, kernel="pntk")
    assert state.rhs.shape == (state.num_params, 3) and state.approximate
    delete_samples(model, state, w0, data.select_ids([101, 108, 117]))
    fresh = precompute_state(
        model, names, w0, data.drop_ids([101, 108, 117]), 3, 0.05, kernel="pntk"
    )
    assert rel(state.inverse, fresh.inverse) < 1e-8 and rel(state.solution, fresh.solution) < 1e-6
    served = unlearned_model(model, names, w0, state_solutions(state))
    assert isinstance(served, PseudoLinearizedModel)
    space = ParamSpace.from_model(model, names)
    rows, f0 = batched_jacobian(model, space, data.x[:7], w0, kernel="pntk")
    with torch.no_grad():
        assert torch.allclose(served(data.x[:7]), f0 + rows @ state.solution, atol=1e-10)
    with pytest.raises(UnlearnkitError, match="pseudo-NTK"):
        unlearned_model(copy.deepcopy(model), names, w0, state_solutions(state), mode="paper")
    path = tmp_path / "s.safetensors"
    state.save(path)
    loaded = NTKState.load(path)
    assert loaded.kernel == "pntk" and loaded.metadata()["approximate"] is True
    assert receipt_kind("ntk_downdate", loaded) == "ntk_downdate-pntk"
    exact = precompute_state(model, names, w0, data, 3, 0.05)
    assert receipt_kind("ntk_downdate", exact) == "ntk_downdate" and not exact.approximate


def test_pntk_equals_exact_ntk_for_a_linear_readout(tiny):
    """For a head on fixed features the eNTK is exactly pNTK (x) I_C: same predictions."""
    _, data, _ = tiny
    torch.manual_seed(1)
    model = FrozenFeatures().double()
    names = ["head.weight", "head.bias"]
    w0 = w0_of(model)
    exact = precompute_state(model, names, w0, data, 3, 0.3)
    pseudo = precompute_state(model, names, w0, data, 3, 0.3, kernel="pntk")
    for st in (exact, pseudo):
        delete_samples(model, st, w0, data.select_ids([100, 111]))
    lin = LinearizedModel(model, names, w0, exact.solution)
    pnt = PseudoLinearizedModel(model, names, w0, pseudo.solution)
    with torch.no_grad():
        assert torch.allclose(pnt(data.x), lin(data.x), atol=1e-9)


def test_fast_ntk_method_pntk_and_kernel_mismatch(tiny, tmp_path):
    model, data, names = tiny
    ctx = UnlearningContext(
        model=model,
        initial_state=w0_of(model),
        retain=data.drop_ids([100, 105]),
        forget=data.select_ids([100, 105]),
        test=data,
        num_classes=3,
        trainable=names,
        train_config=TrainConfig(epochs=1),
        peft="bn",
    )
    path = tmp_path / "ntk_state.safetensors"
    one_shot = create_method("fast_ntk", kernel="pntk").unlearn(copy.copy(ctx))
    stated = create_method("fast_ntk", kernel="pntk", state_path=str(path)).unlearn(copy.copy(ctx))
    assert path.is_file() and not (tmp_path / "ntk_state.safetensors.parts").exists()
    assert isinstance(stated, PseudoLinearizedModel)
    with torch.no_grad():
        assert torch.allclose(stated(data.x), one_shot(data.x), atol=1e-8)
    with pytest.raises(ConflictError, match="kernel"):
        create_method("fast_ntk", state_path=str(path)).unlearn(copy.copy(ctx))
    with pytest.raises(UnlearnkitError, match="kernel"):
        create_method("fast_ntk", kernel="magic")


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_precompute_pntk_then_delete_records_it(tmp_path, save_tiny_trained):
    from typer.testing import CliRunner

    from unlearnkit.cli.ntk import SERVED_FILE, app
    from unlearnkit.models.checkpoint import load_state
    from unlearnkit.ntk.deployment import STATE_FILE

    runner = CliRunner()
    save_tiny_trained(tmp_path)
    base = ["precompute", "--from", str(tmp_path), "--threads", "1"]
    for flags, why in ((["--executor", "spark"], "executor"), (["--kernel", "x"], "kernel")):
        res = runner.invoke(app, [*base, *flags])
        assert res.exit_code == 2 and why in res.output, res.output
    assert not (tmp_path / STATE_FILE).exists()
    res = runner.invoke(app, [*base, "--kernel", "pntk", "--shard-size", "128", "--lam", "0.5"])
    assert res.exit_code == 0 and "approximate" in res.output, res.output
    assert not (tmp_path / f"{STATE_FILE}.parts").exists()  # the shard cache is gone
    assert NTKState.load(tmp_path / STATE_FILE).kernel == "pntk"
    res = runner.invoke(app, ["delete", "--from", str(tmp_path), "--ids", "3,5"])
    assert res.exit_code == 0, res.output
    _, meta = load_state(tmp_path / SERVED_FILE)
    assert meta["kind"] == "fast_ntk-linearized-pntk" and meta["approximate"] is True
    res = runner.invoke(app, ["status", "--from", str(tmp_path)])
    assert "kernel: pntk (approximate)" in res.output and "current" in res.output
