"""Fast-NTK's output scale: scaled targets and a temperature fitted on D_r keep the deletion
exact within the linearized class (unlearned == the same option trained from scratch on D_r)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ntk_helpers import FrozenFeatures

from unlearnkit.errors import ConflictError
from unlearnkit.metrics.calibration import nll_at_temperature
from unlearnkit.ntk import (
    LinearizedModel,
    NTKState,
    ParamSpace,
    accumulate_gram,
    delete_samples,
    precompute_state,
    solve_cg,
    solve_dual,
    solve_primal,
    stack_jacobian,
    state_fingerprint,
)
from unlearnkit.ntk.deployment import calibrate, open_state
from unlearnkit.ntk.jacobian import regression_targets
from unlearnkit.ntk.update import posterior_sample

FORGET = [101, 107, 113, 115, 102]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def w0_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_scaled_targets_are_centred_and_scaled():
    y = torch.tensor([0, 2, 1])
    t = regression_targets(y, 3, 10.0)
    assert torch.allclose(t.sum(1), torch.zeros(3), atol=1e-6)  # centred: softmax-invariant
    assert torch.equal(t.argmax(1), y)
    assert torch.allclose(t[0, 0] - t[0, 1], torch.tensor(10.0))  # logits s apart
    assert torch.equal(regression_targets(y, 3), F.one_hot(y, 3).float())  # None: one-hot


@pytest.mark.parametrize("scale", [None, 10.0])
def test_downdate_with_scaled_targets_equals_scratch_on_retain(tiny, scale):
    model, data, names = tiny
    w0 = w0_of(model)
    state = precompute_state(model, names, w0, data, 3, 0.05, chunk_size=6, target_scale=scale)
    delete_samples(model, state, w0, data.select_ids(FORGET[:3]))
    delete_samples(model, state, w0, data.select_ids(FORGET[3:]))  # composes
    retain = data.drop_ids(FORGET)
    fresh = precompute_state(model, names, w0, retain, 3, 0.05, chunk_size=6, target_scale=scale)
    assert state.target_scale == scale
    assert rel_err(state.rhs, fresh.rhs) < 1e-10
    assert rel_err(state.solution, fresh.solution) < 1e-6
    assert rel_err(state.solution, state.solution_full) > 1e-3  # the deletion did something


def test_scaled_targets_change_the_fit_and_every_solver_agrees(tiny):
    model, data, names = tiny
    w0 = w0_of(model)
    space = ParamSpace.from_model(model, names)
    stats = accumulate_gram(model, space, data.x, data.y, 3, w0, 7, target_scale=8.0)
    primal = solve_primal(stats.gram, stats.rhs, 0.1)
    u, r = stack_jacobian(model, space, data.x, data.y, 3, w0, 7, torch.float64, target_scale=8.0)
    torch.testing.assert_close(solve_dual(u, r, 0.1), primal, rtol=1e-7, atol=1e-9)
    cg = solve_cg(model, space, data.x, data.y, 3, 0.1, w0, tol=1e-12, target_scale=8.0)
    torch.testing.assert_close(cg.double(), primal, rtol=1e-5, atol=1e-7)
    onehot = accumulate_gram(model, space, data.x, data.y, 3, w0, 7)
    assert rel_err(solve_primal(onehot.gram, onehot.rhs, 0.1), primal) > 0.5


def test_scaled_fit_equals_the_closed_form_ridge_on_scaled_targets(tiny):
    """On a model linear in its head, the scaled-target fit is the ridge regression of the
    head onto s (onehot - 1/C), written out independently."""
    _, data, _ = tiny
    torch.manual_seed(1)
    model = FrozenFeatures().double()
    names, lam, s = ["head.weight", "head.bias"], 0.3, 6.0
    w0 = w0_of(model)
    state = precompute_state(model, names, w0, data, 3, lam, target_scale=s)
    delete_samples(model, state, w0, data.select_ids([100, 103, 111]))
    retain = data.drop_ids([100, 103, 111])
    with torch.no_grad():
        phi = torch.cat([model.body(retain.x), torch.ones(len(retain), 1, dtype=torch.float64)], 1)
        theta0 = torch.cat([w0["head.weight"], w0["head.bias"][:, None]], 1)
        target = s * (F.one_hot(retain.y, 3).double() - 1 / 3)
        lhs = phi.T @ phi + lam * torch.eye(7, dtype=torch.float64)
        theta = torch.linalg.solve(lhs, phi.T @ target + lam * theta0.T).T
    lin = LinearizedModel(model, names, w0, state.solution)
    params = dict(lin.named_parameters())
    assert rel_err(params["head.weight"].detach(), theta[:, :6]) < 1e-8
    assert rel_err(params["head.bias"].detach(), theta[:, 6]) < 1e-8


def test_temperature_is_fitted_on_retain_and_equals_scratch(tiny):
    model, data, names = tiny
    w0 = w0_of(model)
    state = precompute_state(model, names, w0, data, 3, 0.05, target_scale=4.0)
    delete_samples(model, state, w0, data.select_ids(FORGET))
    retain = data.drop_ids(FORGET)
    fresh = precompute_state(model, names, w0, retain, 3, 0.05, target_scale=4.0)
    unlearned = LinearizedModel(model, names, w0, state.solution)
    scratch = LinearizedModel(model, names, w0, fresh.solution)
    t = calibrate(unlearned, retain, "fit")
    assert calibrate(scratch, retain, "fit") == pytest.approx(t, rel=1e-5)
    with torch.no_grad():
        served, raw = unlearned(data.x), scratch(data.x) * scratch.temperature
        assert torch.allclose(served, scratch(data.x), rtol=1e-5, atol=1e-7)
        assert torch.allclose(served * t, raw, rtol=1e-5, atol=1e-7)  # logits / T
        # T is the likelihood optimum on D_r: moving it either way raises the NLL
        base = unlearned(retain.x) * t
    best = nll_at_temperature(base, retain.y, t)
    assert best <= nll_at_temperature(base, retain.y, 1.2 * t)
    assert best <= nll_at_temperature(base, retain.y, t / 1.2)
    assert t != pytest.approx(1.0, abs=1e-3)
    assert calibrate(unlearned, retain, "none") == 1.0
    with torch.no_grad():
        assert torch.allclose(unlearned(data.x), raw, rtol=1e-6, atol=1e-8)


def test_state_records_its_target_and_a_mismatch_is_stale(tiny, tmp_path):
    model, data, names = tiny
    w0 = w0_of(model)
    state = precompute_state(model, names, w0, data, 3, 0.05, target_scale=10.0)
    path = tmp_path / "ntk.safetensors"
    state.save(path)
    loaded = NTKState.load(path)
    assert loaded.target_scale == 10.0
    assert loaded.fingerprint["target"] == "scaled:10.0"
    opened = open_state(path, w0, names, data.fingerprint())  # checks against its own target
    assert opened.target_scale == 10.0
    with pytest.raises(ConflictError, match="target"):
        NTKState.load(path, expect=state_fingerprint(w0, names, data.fingerprint(), 0.05))
    onehot = precompute_state(model, names, w0, data, 3, 0.05)
    onehot.fingerprint.pop("target")  # a state written before targets were recorded
    onehot.save(path)
    old = NTKState.load(path, expect=state_fingerprint(w0, names, data.fingerprint(), 0.05))
    assert old.target_scale is None and old.fingerprint["target"] == "onehot"


def test_noise_is_d_r_posterior_noise_and_equals_scratch(tiny):
    """Golatkar-style noise: covariance sigma^2 (A_Dr + lam I)^-1, seeded; the downdated state
    and a state built on D_r alone give the same draw for the same seed."""
    model, data, names = tiny
    w0 = w0_of(model)
    state = precompute_state(model, names, w0, data, 3, 0.05, target_scale=10.0)
    delete_samples(model, state, w0, data.select_ids(FORGET))
    fresh = precompute_state(model, names, w0, data.drop_ids(FORGET), 3, 0.05, target_scale=10.0)
    a = posterior_sample(state.solution, state.inverse, 0.5, seed=3)
    b = posterior_sample(fresh.solution, fresh.inverse, 0.5, seed=3)
    assert rel_err(a, b) < 1e-6
    assert rel_err(a, state.solution) > 1e-3  # noise was added
    assert rel_err(posterior_sample(state.solution, state.inverse, 0.5, seed=4), a) > 1e-3
    assert torch.equal(posterior_sample(state.solution, state.inverse, 0.0, 3), state.solution)
    draws = torch.stack(
        [posterior_sample(state.solution, state.inverse, 0.5, seed=s) for s in range(4000)]
    )
    cov = torch.cov((draws - state.solution).T)
    target = 0.25 * state.inverse
    assert float((cov - target).norm() / target.norm()) < 0.1
