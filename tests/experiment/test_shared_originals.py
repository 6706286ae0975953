"""A benchmark of several forget settings trains each seed's original once and hands it in."""

import torch

from unlearnkit.config import build_config
from unlearnkit.data.forget import select_forget
from unlearnkit.experiment import run_experiment, run_method, score_against, unlearning_context
from unlearnkit.models import create_model
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.training import channels_last, predict_logits


def _cfg(forget: str, seeds: list[int]):
    return build_config(
        forget=forget,
        seeds=seeds,
        methods=["retrain", "finetune"],
        train={"epochs": 2, "lr": 0.05},
        pretrain_config={"epochs": 2, "lr": 0.05},
        method_params={"finetune": {"epochs": 1}},
    )


def test_given_originals_are_used_for_their_seeds_and_left_unchanged(monkeypatch):
    cfg = _cfg("class:3", [0, 1])
    bundle = load_bundle(cfg)
    original = train_original(cfg, bundle, 0)
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    trained: list[int] = []
    real = train_original

    def counting(c, b, seed, model=None):
        trained.append(seed)
        return real(c, b, seed, model)

    monkeypatch.setattr("unlearnkit.experiment.train_original", counting)
    results = run_experiment(cfg, bundle=bundle, originals={0: original})
    assert trained == [1]  # seed 0 came in trained, seed 1 was trained here
    stages = [s["stage"] for s in results["stages"]]
    assert stages.count("seed 1: pretrain + train the original") == 1
    assert not any(s["stage"].startswith("seed 0: pretrain") for s in results["stages"])
    after = original.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(after[k].is_contiguous() for k in after)  # the layout is given back too
    seed0 = {r["method"]: r for r in results["runs"] if r["seed"] == 0}
    assert seed0["original"]["acc"]["forget"] > 50 and seed0["retrain"]["acc"]["forget"] == 0.0


def test_channels_last_changes_speed_only_and_restores_the_layout():
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 28)
    x = torch.randn(64, 1, 28, 28)
    plain = predict_logits(model, x)
    with channels_last(model) as same:
        assert same is model
        conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        with channels_last(model):  # nested: no second conversion, no early restore
            pass
        assert conv.is_contiguous(memory_format=torch.channels_last)
        fast = predict_logits(model, x)
    assert all(p.is_contiguous() for p in model.parameters())
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)


def test_one_method_alone_measures_what_the_experiment_measures():
    """The tuning benchmark runs grid points one by one with run_method; each must score as the
    same method and parameters would inside run_experiment (same seed, same original)."""
    cfg = _cfg("class:3", [0])
    bundle = load_bundle(cfg)
    original = train_original(cfg, bundle, 0)
    full = run_experiment(cfg, bundle=bundle, original=original)
    rows = {r["method"]: r for r in full["runs"]}
    ctx = unlearning_context(cfg, bundle, original, select_forget(bundle.train, cfg.forget, 0), 0)
    reference, _ = run_method(cfg, "retrain", {}, ctx, original)
    alone, stage = run_method(cfg, "finetune", {"epochs": 1}, ctx, original)
    score_against(alone, reference)
    for key in ("acc", "mia_efficacy", "relearn_epochs", "params_touched", "tow", "tow_mia"):
        assert alone[key] == rows["finetune"][key], key
    assert stage.time_s >= alone["time_s"] > 0
    other, _ = run_method(cfg, "finetune", {"epochs": 1, "lr": 0.5}, ctx, original)
    assert other["acc"] != alone["acc"]  # the parameters given are the ones used
