"""The NTK engine against independent computations (autograd, dense algebra, recomputes)."""

from __future__ import annotations

import pytest
import torch
from ntk_helpers import FrozenFeatures
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import ConflictError, NotFoundError, UnlearnkitError
from unlearnkit.ntk import (
    LinearizedModel,
    MemoryBudgetError,
    NTKState,
    ParamSpace,
    accumulate_gram,
    choose_solver,
    delete_samples,
    per_sample_jacobian,
    precompute_state,
    solve_cg,
    solve_dual,
    solve_primal,
    stack_jacobian,
    state_fingerprint,
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_jacobian_matches_autograd_row_by_row(tiny):
    model, data, names = tiny
    space = ParamSpace.from_model(model, names)
    jac, f0 = per_sample_jacobian(model, space, data.x[:4])
    model.eval()
    params = dict(model.named_parameters())
    for i in range(4):
        out = model(data.x[i : i + 1])[0]
        assert torch.allclose(out, f0[i])
        for c in range(out.numel()):
            grads = torch.autograd.grad(out[c], [params[n] for n in names], retain_graph=True)
            row = torch.cat([g.reshape(-1) for g in grads])
            assert torch.allclose(jac[i, c], row, atol=1e-12), (i, c)


def test_jacobian_uses_eval_mode_and_restores_training_flag(tiny):
    model, data, names = tiny
    model.train()
    space = ParamSpace.from_model(model, names)
    one, _ = per_sample_jacobian(model, space, data.x[:1])
    many, _ = per_sample_jacobian(model, space, data.x[:5])
    assert model.training
    assert torch.allclose(one[0], many[0], atol=1e-12)  # a sample's row ignores its chunk


def test_streamed_gram_equals_one_shot(tiny):
    model, data, names = tiny
    space = ParamSpace.from_model(model, names)
    streamed = accumulate_gram(model, space, data.x, data.y, 3, chunk_size=3)
    u, r = stack_jacobian(
        model, space, data.x, data.y, 3, chunk_size=len(data), dtype=torch.float64
    )
    assert torch.allclose(streamed.gram, u.T @ u, atol=1e-10)
    assert torch.allclose(streamed.rhs, u.T @ r, atol=1e-10)


def test_primal_dual_and_cg_agree(tiny):
    model, data, names = tiny
    space = ParamSpace.from_model(model, names)
    lam = 0.1
    stats = accumulate_gram(model, space, data.x, data.y, 3)
    primal = solve_primal(stats.gram, stats.rhs, lam)
    u, r = stack_jacobian(model, space, data.x, data.y, 3, dtype=torch.float64)
    dual = solve_dual(u, r, lam)
    cg = solve_cg(model, space, data.x, data.y, 3, lam, chunk_size=7, tol=1e-10, max_iter=500)
    assert rel_err(dual, primal) < 1e-8
    assert rel_err(cg, primal) < 1e-6
    # and it is really the ridge minimiser: the gradient of the objective vanishes
    grad = u.T @ (u @ primal - r) + lam * primal
    assert float(grad.norm()) < 1e-8 * float(r.norm())


def _state(model, data, names, lam=0.05):
    w0 = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    w0 = {k: v.detach().clone() for k, v in w0.items()}
    return precompute_state(model, names, w0, data, 3, lam, chunk_size=6), w0


def test_downdate_equals_recompute_and_composes(tiny):
    model, data, names = tiny
    state, w0 = _state(model, data, names)
    first, second = data.select_ids([101, 107, 113]), data.select_ids([115, 102])
    delete_samples(model, state, w0, first)
    delete_samples(model, state, w0, second)
    retain = data.drop_ids([101, 107, 113, 115, 102])
    fresh, _ = _state(model, retain, names)
    assert rel_err(state.gram, fresh.gram) < 1e-10
    assert rel_err(state.inverse, fresh.inverse) < 1e-8
    assert rel_err(state.solution, fresh.solution) < 1e-4
    assert sorted(state.deleted_ids.tolist()) == [101, 102, 107, 113, 115]
    # the downdate did change the solution (the test can fail)
    assert rel_err(state.solution, state.solution_full) > 1e-3


def test_large_downdate_refactorises_and_equals_recompute(tiny):
    """k C >= P rows take the P x P refactorisation path (the k C x k C Woodbury system would
    not fit in memory at scale); it must give what a recompute gives, and compose with the
    Woodbury path."""
    model, data, names = tiny
    state, w0 = _state(model, data, names)
    k = -(-state.num_params // state.num_classes)  # the fewest samples with k C >= P
    assert k + 2 < len(data), "fixture too small for a large deletion"
    large = data.ids[:k].tolist()
    delete_samples(model, state, w0, data.select_ids([int(data.ids[-1])]))  # Woodbury first
    delete_samples(model, state, w0, data.select_ids(large))  # then the refactorisation
    fresh, _ = _state(model, data.drop_ids([*large, int(data.ids[-1])]), names)
    assert rel_err(state.gram, fresh.gram) < 1e-10
    assert rel_err(state.inverse, fresh.inverse) < 1e-8
    assert rel_err(state.solution, fresh.solution) < 1e-6
    assert rel_err(state.solution, state.solution_full) > 1e-3


def test_bad_deletions_change_nothing(tiny):
    model, data, names = tiny
    state, w0 = _state(model, data, names)
    delete_samples(model, state, w0, data.select_ids([104]))
    before = {
        k: v.clone()
        for k, v in {"g": state.gram, "h": state.inverse, "b": state.rhs, "a": state.alive}.items()
    }
    with pytest.raises(ConflictError, match="104"):
        delete_samples(model, state, w0, data.select_ids([103, 104]))
    stranger = ArraySplit(data.x[:1], data.y[:1], torch.tensor([999]))
    with pytest.raises(NotFoundError, match="999"):
        delete_samples(model, state, w0, stranger)
    with pytest.raises(UnlearnkitError, match="twice"):
        state.positions(torch.tensor([105, 105]))
    after = {"g": state.gram, "h": state.inverse, "b": state.rhs, "a": state.alive}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_state_roundtrip_and_stale_refusal(tiny, tmp_path):
    model, data, names = tiny
    state, w0 = _state(model, data, names)
    delete_samples(model, state, w0, data.select_ids([110]))
    path = tmp_path / "ntk.safetensors"
    state.save(path)
    expect = state_fingerprint(w0, names, data.fingerprint(), 0.05)
    loaded = NTKState.load(path, expect=expect)
    assert torch.equal(loaded.inverse, state.inverse)
    assert loaded.deleted_ids.tolist() == [110]
    changed = dict(w0)
    changed["head.bias"] = changed["head.bias"] + 1
    with pytest.raises(ConflictError, match=r"stale.*w0"):
        NTKState.load(path, expect=state_fingerprint(changed, names, data.fingerprint(), 0.05))
    with pytest.raises(ConflictError, match="params"):
        NTKState.load(path, expect=state_fingerprint(w0, names[:2], data.fingerprint(), 0.05))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(UnlearnkitError, match="corrupt"):
        NTKState.load(path)
    with pytest.raises(NotFoundError):
        NTKState.load(tmp_path / "missing.safetensors")


def test_memory_guard_refuses_and_chooses():
    with pytest.raises(MemoryBudgetError, match="GiB"):
        choose_solver(p=10**6, rows=10**6, num_classes=10, budget=10**6)
    assert choose_solver(p=1000, rows=50_000, num_classes=10, budget=2**34).solver == "primal"
    assert choose_solver(p=10**6, rows=5_000, num_classes=10, budget=2**36).solver == "dual"
    assert choose_solver(p=10**6, rows=10**6, num_classes=10, budget=2**33).solver == "cg"


def test_precompute_refuses_over_budget_before_work(tiny):
    model, data, names = tiny
    with pytest.raises(MemoryBudgetError):
        precompute_state(model, names, dict(model.state_dict()), data, 3, 0.1, budget=1000)


def test_linear_model_unlearning_equals_exact_ridge_retrain(tiny):
    _, data, _ = tiny
    torch.manual_seed(1)
    model = FrozenFeatures().double()
    names = ["head.weight", "head.bias"]
    lam = 0.3
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = precompute_state(model, names, w0, data, 3, lam)
    forget = [100, 103, 111, 119]
    delete_samples(model, state, w0, data.select_ids(forget))
    retain = data.drop_ids(forget)
    # exact ridge retrain on D_r, written out independently: min |phi W^T + c - Y|^2
    # + lam |(W, c) - (W0, c0)|^2, solved per class with an augmented feature [phi, 1]
    with torch.no_grad():
        phi = torch.cat([model.body(retain.x), torch.ones(len(retain), 1, dtype=torch.float64)], 1)
        theta0 = torch.cat([w0["head.weight"], w0["head.bias"][:, None]], 1)  # (3, 7)
        target = torch.nn.functional.one_hot(retain.y, 3).double()
        lhs = phi.T @ phi + lam * torch.eye(7, dtype=torch.float64)
        theta = torch.linalg.solve(lhs, phi.T @ target + lam * theta0.T).T
    lin = LinearizedModel(model, names, w0, state.solution)
    params = dict(lin.named_parameters())
    got = {n: params[n].detach() for n in names}
    assert rel_err(got["head.weight"], theta[:, :6]) < 1e-8
    assert rel_err(got["head.bias"], theta[:, 6]) < 1e-8
    # the linearized model is the model itself here
    exact = FrozenFeatures().double()
    exact.load_state_dict({**w0, **got})
    with torch.no_grad():
        assert torch.allclose(lin(data.x), exact(data.x), atol=1e-10)


def test_linearized_model_keeps_names_and_trains_only_selected(tiny):
    model, data, names = tiny
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    lin = LinearizedModel(model, names, w0)
    assert [n for n, _ in lin.named_parameters()] == [n for n, _ in model.named_parameters()]
    lin.train()
    assert lin.training and not lin.bn.training
    assert [n for n, p in lin.named_parameters() if p.requires_grad] == names
    with torch.no_grad():
        model.eval()
        assert torch.allclose(lin(data.x), model(data.x), atol=1e-12)  # w = w0: f = f0
    loss = torch.nn.functional.cross_entropy(lin(data.x), data.y)
    loss.backward()
    assert float(lin.bn.weight.grad.norm()) > 0 and lin.conv.weight.grad is None
    # the first-order model differs from the network once w moves (it is not the network)
    step = 0.5 * torch.ones(ParamSpace.from_model(model, names).numel, dtype=torch.float64)
    lin.set_displacement(step)
    assert torch.allclose(lin.displacement(), step)
    moved = TinyCopy(model, {**w0, **{n: p.detach() for n, p in lin.named_parameters()}})
    with torch.no_grad():
        assert not torch.allclose(lin(data.x), moved(data.x), atol=1e-6)


def TinyCopy(model: nn.Module, state: dict) -> nn.Module:
    import copy

    other = copy.deepcopy(model)
    other.load_state_dict(state)
    return other.eval()


def test_blocked_dual_kernel_equals_dense():
    from unlearnkit.ntk.solvers import dual_kernel

    jac = torch.randn(1000, 17)
    dense = jac.double() @ jac.double().T
    assert torch.allclose(dual_kernel(jac, block=128), dense, atol=1e-10)


def test_paper_update_with_nothing_to_forget_keeps_the_trained_weights():
    from unlearnkit.ntk.update import Solutions, apply_paper_update

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    names = [n for n, _ in model.named_parameters()]
    w0 = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    full = torch.randn(15, dtype=torch.float64)
    same = Solutions(full=full, retain=full + 1e-15, solver="primal")  # rounding-level delta
    assert apply_paper_update(model, names, w0, same) == 0.0
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    moved = Solutions(full=full, retain=full + 0.1, solver="primal")
    assert apply_paper_update(model, names, w0, moved, scale="none") == 1.0
    for n, p in model.named_parameters():  # scale 1: w = w_trained + (w_Dr - w_D), all + 0.1
        assert torch.allclose(p, before[n] + 0.1, atol=1e-6)
