"""The relearn threshold relative to the original model: each seed's bar is the configured
fraction of the original's own accuracy on D_f, the same for every method of that seed."""

import pytest

from unlearnkit.config import build_config
from unlearnkit.data.forget import select_forget
from unlearnkit.experiment import run_experiment, run_method, unlearning_context
from unlearnkit.recipe import load_bundle, train_original


def _cfg(**overrides):
    return build_config(
        {"forget": "random:0.1", "methods": ["finetune"]},
        train={"epochs": 2, "lr": 0.05},
        pretrain_config={"epochs": 2, "lr": 0.05},
        method_params={"finetune": {"epochs": 1}},
        relearn_max_epochs=2,
        **overrides,
    )


def test_a_fraction_of_the_originals_forget_accuracy_for_every_method():
    cfg = _cfg(relearn_threshold_fraction=0.8)
    bundle = load_bundle(cfg)
    original = train_original(cfg, bundle, 0)
    results = run_experiment(cfg, bundle=bundle, original=original)
    rows = {r["method"]: r for r in results["runs"]}
    want = 0.8 * rows["original"]["acc"]["forget"]
    assert want < rows["original"]["acc"]["forget"]
    assert {m: r["relearn_threshold"] for m, r in rows.items()} == {
        m: pytest.approx(want) for m in rows
    }
    assert rows["original"]["relearn_epochs"] == 0.0  # at its own accuracy, above the bar
    assert results["config"]["relearn_threshold_fraction"] == 0.8
    assert results["config"]["relearn_threshold"] is None
    # one method alone (the tuning benchmark's path) finds the same bar from the original
    ctx = unlearning_context(cfg, bundle, original, select_forget(bundle.train, cfg.forget, 0), 0)
    alone, _ = run_method(cfg, "finetune", {"epochs": 1}, ctx, original)
    assert alone["relearn_threshold"] == pytest.approx(want)
    assert alone["relearn_epochs"] == rows["finetune"]["relearn_epochs"]


def test_the_absolute_threshold_is_recorded_as_given():
    cfg = _cfg(relearn_threshold=99.5, methods=["retrain"])
    results = run_experiment(cfg)
    assert {r["relearn_threshold"] for r in results["runs"]} == {99.5}
