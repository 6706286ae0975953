"""Fast-NTK and NTK methods on digits: quality vs retrain, isolation, state reuse, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

import unlearnkit.methods.fast_ntk
import unlearnkit.methods.ntk
import unlearnkit.models.prompts  # noqa: F401 - registers the prompts mode
from unlearnkit.config import ExperimentConfig
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.methods import UnlearningContext, create_method
from unlearnkit.ntk import LinearizedModel, MemoryBudgetError
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.training import TrainConfig, accuracy


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits_class_forget():
    """smallcnn pretrained on a public split, BN + new head trained on D; forget class 3."""
    torch.set_num_threads(1)  # 2 threads on a shared 2-core box spin and run 20x slower
    cfg = ExperimentConfig(
        model="smallcnn",
        peft="bn",
        forget="class:3",
        pretrain_config=TrainConfig(epochs=10, lr=0.05),
        train=TrainConfig(epochs=15, lr=0.05),
        methods=["retrain"],
    )
    bundle = load_bundle(cfg)
    original = train_original(cfg, bundle, 0)
    ids = select_forget(bundle.train, cfg.forget, 0)
    ctx = UnlearningContext(
        model=original.model,
        initial_state=original.initial_state,
        retain=bundle.train.drop_ids(ids),
        forget=bundle.train.select_ids(ids),
        test=bundle.test,
        num_classes=10,
        trainable=original.trainable,
        train_config=cfg.train,
        peft="bn",
        seed=0,
    )
    return ctx


def fresh(ctx: UnlearningContext) -> UnlearningContext:
    new = copy.copy(ctx)
    new.model = copy.deepcopy(ctx.model)
    return new


def accs(model, ctx) -> dict[str, float]:
    return {"forget": accuracy(model, ctx.forget), "test": accuracy(model, ctx.test)}


def frozen_params_identical(before, after, trainable) -> bool:
    ref = dict(before.named_parameters())
    return all(torch.equal(p, ref[n]) for n, p in after.named_parameters() if n not in trainable)


def test_fast_ntk_matches_retrain_on_digits_class_forget(digits_class_forget):
    ctx = digits_class_forget
    retrained = create_method("retrain").unlearn(fresh(ctx))
    ref = accs(retrained, ctx)
    unlearned = create_method("fast_ntk").unlearn(fresh(ctx))  # the shipped default
    got = accs(unlearned, ctx)
    assert accuracy(ctx.model, ctx.forget) > 90  # the original did know the class
    assert abs(got["forget"] - ref["forget"]) <= 5, (got, ref)
    assert abs(got["test"] - ref["test"]) <= 3, (got, ref)
    assert isinstance(unlearned, LinearizedModel)
    assert frozen_params_identical(ctx.model, unlearned, ctx.trainable)


def test_paper_mode_touches_only_peft_parameters(digits_class_forget):
    ctx = fresh(digits_class_forget)
    before = copy.deepcopy(ctx.model)
    unlearned = create_method("fast_ntk", mode="paper").unlearn(ctx)
    assert frozen_params_identical(before, unlearned, ctx.trainable)
    moved = [
        n
        for n, p in unlearned.named_parameters()
        if not torch.equal(p, dict(before.named_parameters())[n])
    ]
    assert moved and set(moved) <= set(ctx.trainable)


def test_state_file_gives_the_same_answer_and_refuses_stale(digits_class_forget, tmp_path):
    ctx = digits_class_forget
    path = tmp_path / "ntk.safetensors"
    direct = create_method("fast_ntk").unlearn(fresh(ctx))
    made = create_method("fast_ntk", state_path=str(path)).unlearn(fresh(ctx))  # writes D's state
    reused = create_method("fast_ntk", state_path=str(path)).unlearn(fresh(ctx))  # loads it
    assert path.is_file()
    for a, b in ((made, direct), (reused, direct)):
        for n in ctx.trainable:
            pa, pb = dict(a.named_parameters())[n], dict(b.named_parameters())[n]
            assert torch.allclose(pa, pb, rtol=1e-3, atol=1e-5), n
    with pytest.raises(ConflictError, match="lam"):
        create_method("fast_ntk", state_path=str(path), lam=0.5).unlearn(fresh(ctx))
    other = fresh(ctx)
    other.retain = ctx.retain.subset(torch.arange(len(ctx.retain) - 1))
    with pytest.raises(ConflictError, match="stale"):
        create_method("fast_ntk", state_path=str(path)).unlearn(other)


def test_fast_ntk_refuses_non_peft_mode(digits_class_forget):
    ctx = fresh(digits_class_forget)
    ctx.peft = "full"
    with pytest.raises(UnlearnkitError, match="--peft bn"):
        create_method("fast_ntk").unlearn(ctx)


def test_full_ntk_refuses_over_budget_and_changes_nothing(digits_class_forget):
    ctx = fresh(digits_class_forget)
    before = copy.deepcopy(ctx.model.state_dict())
    with pytest.raises(MemoryBudgetError, match="GiB"):
        create_method("ntk", max_memory_gb=0.01).unlearn(ctx)
    assert all(torch.equal(v, before[k]) for k, v in ctx.model.state_dict().items())


def test_bad_hyper_parameters_fail_early():
    with pytest.raises(UnlearnkitError, match="lam"):
        create_method("fast_ntk", lam=-1)
    with pytest.raises(UnlearnkitError, match="mode"):
        create_method("fast_ntk", mode="magic")
