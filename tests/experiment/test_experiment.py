import time

import pytest

from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import run_experiment


def test_class_forget_reference_is_sound():
    cfg = build_config(
        forget="class:3",
        methods=["finetune"],
        train={"epochs": 8, "lr": 0.05},
        pretrain_config={"epochs": 5, "lr": 0.05},
        method_params={"finetune": {"epochs": 1}},
    )
    results = run_experiment(cfg)
    assert {"dataset", "model", "forget", "seeds", "runs", "summary"} <= set(results)
    rows = {r["method"]: r for r in results["runs"]}
    assert set(rows) == {"original", "retrain", "finetune"}
    assert rows["retrain"]["acc"]["forget"] == 0.0
    assert rows["original"]["acc"]["forget"] > 80
    assert rows["retrain"]["tow"] == 1.0
    for row in rows.values():
        assert set(row) >= {
            "acc",
            "mia_efficacy",
            "tow",
            "tow_mia",
            "relearn_epochs",
            "time_s",
            "peak_mem_mb",
            "params_touched",
        }
    assert rows["finetune"]["params_touched"] > 0
    assert results["trainable_params"] == 970


def test_method_that_needs_peft_is_refused_with_other_modes():
    with pytest.raises(UnlearnkitError, match=r"invalid methods: fast_ntk needs --peft bn or "):
        build_config(methods=["finetune", "fast_ntk"], peft="full")
    assert "fast_ntk" in build_config(methods=["fast_ntk"], peft="bn").methods


def test_default_methods_leave_out_those_unfit_for_the_mode():
    full = build_config(peft="full").methods
    assert "fast_ntk" not in full and {"retrain", "finetune", "salun"} <= set(full)
    assert "fast_ntk" in build_config(peft="bn").methods


@pytest.mark.parametrize(
    "model, peft, message",
    [
        ("vit_tiny", "bn", "BatchNorm"),
        ("vit_tiny", None, "BatchNorm"),  # the default mode is checked too
        ("smallcnn", "prompts", "visual prompts"),
        ("resnet18", "lora", "LoRA adapters"),
    ],
)
def test_trainable_mode_missing_from_model_is_a_config_error(model, peft, message):
    with pytest.raises(UnlearnkitError, match=rf"invalid peft: .*model '{model}'.*{message}"):
        build_config(model=model, peft=peft)


@pytest.mark.parametrize(
    "model, peft", [("vit_tiny_vpt", "prompts"), ("resnet18", "bn"), ("vit_tiny", "full")]
)
def test_trainable_mode_present_on_model_passes_quickly(model, peft):
    build_config(model=model, peft=peft)  # warm-up: first use of the model class
    start = time.perf_counter()
    assert build_config(model=model, peft=peft).peft == peft
    assert time.perf_counter() - start < 1.0  # probe on the meta device: no weights, no training


def test_bad_model_options_fail_at_config_time():
    with pytest.raises(UnlearnkitError, match="num_prompts must be >= 1"):
        build_config(model="vit_tiny_vpt", peft="prompts", model_options={"num_prompts": 0})
