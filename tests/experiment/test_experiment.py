import pytest

from unlearnkit import training
from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import run_experiment
from unlearnkit.metrics import tow, tow_mia


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
    assert results["trainable_params"] == 970
    # issue 29: the policy, relearn mode, interval method, MIA control and reference check
    assert results["bn_mode"] == results["config"]["bn_mode"] == "recompute"
    assert results["relearn_bn"] == "frozen"
    assert results["intervals"]["n_seeds"] == 1
    assert results["mia_control"]["informative"] is None  # one seed: no spread to judge by
    check = results["reference_check"]
    assert check["retrain_heldout"] == pytest.approx(rows["retrain"]["acc_heldout"])
    assert rows["retrain"]["acc_heldout"] > rows["retrain"]["acc"]["test"]  # class 3 left out
    assert check["ok"] == (check["retrain_heldout"] >= check["original_heldout"] - 1.0)
    # every stage is timed: data, the original, each method with its evaluation
    stages = [st["stage"] for st in results["stages"]]
    assert stages == [
        "load data",
        "seed 0: pretrain + train the original",
        "seed 0: retrain + evaluation",
        "seed 0: finetune + evaluation",
    ]
    staged = {st["stage"]: st for st in results["stages"]}
    # a stage holds the method's own time plus its evaluation (MIA, relearn)
    assert staged["seed 0: finetune + evaluation"]["time_s"] >= rows["finetune"]["time_s"]
    assert results["wall_s"] >= sum(st["time_s"] for st in results["stages"])
    assert results["peak_rss_mb"] > 50
    # SGD with weight decay moves every trainable entry, and nothing else
    assert rows["finetune"]["params_touched"] == 970 and rows["original"]["params_touched"] == 0
    # fine-tuning on D_r keeps the retain set; ToW is measured against the retrain row
    assert rows["finetune"]["acc"]["retain"] >= rows["original"]["acc"]["retain"] - 2
    for row in rows.values():
        assert row["tow"] == pytest.approx(tow(row["acc"], rows["retrain"]["acc"]))
        assert row["tow_mia"] == pytest.approx(
            tow_mia(
                row["acc"],
                row["mia_efficacy"],
                rows["retrain"]["acc"],
                rows["retrain"]["mia_efficacy"],
            )
        )


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
def test_trainable_mode_is_checked_on_a_meta_probe_without_data_or_training(
    monkeypatch, model, peft
):
    """The check builds the model on the meta device (no weights to allocate or initialise)
    and never loads data or trains."""
    from unlearnkit.models import factory
    from unlearnkit.recipe import build

    built = []
    real = factory.create_model

    def recording(*args, **kwargs):
        probe = real(*args, **kwargs)
        built.append({p.device.type for p in probe.parameters()})
        return probe

    def never(*_args, **_kwargs):
        raise AssertionError("the config check loaded data or trained")

    monkeypatch.setattr(factory, "create_model", recording)
    monkeypatch.setattr(build, "load_dataset", never)
    monkeypatch.setattr(build, "train", never)
    monkeypatch.setattr(training, "train", never)
    assert build_config(model=model, peft=peft).peft == peft
    assert built == [{"meta"}]  # one probe, every parameter on the meta device


def test_bad_model_options_fail_at_config_time():
    with pytest.raises(UnlearnkitError, match="num_prompts must be >= 1"):
        build_config(model="vit_tiny_vpt", peft="prompts", model_options={"num_prompts": 0})
