"""Per-dataset presets: a base under the user's settings, never mixed into a user's own set."""

from __future__ import annotations

from unlearnkit.config import build_config
from unlearnkit.recipe.presets import DATASET_PRESETS


def test_digits_keeps_the_built_in_recipe() -> None:
    cfg = build_config()
    assert cfg.train.epochs == 30 and cfg.train.batch_size == 64
    assert cfg.pretrain_config.epochs == 20
    assert cfg.method_params == {}


def test_fashion_mnist_gets_its_preset() -> None:
    preset = DATASET_PRESETS["fashion_mnist"]
    cfg = build_config(dataset="fashion_mnist")
    assert cfg.train.epochs == preset["train"]["epochs"]
    assert cfg.train.batch_size == preset["train"]["batch_size"]
    assert cfg.pretrain_config.epochs == preset["pretrain_config"]["epochs"]
    assert cfg.method_params["finetune"] == preset["method_params"]["finetune"]


def test_user_values_win_field_by_field() -> None:
    preset = DATASET_PRESETS["fashion_mnist"]
    cfg = build_config(
        {"train": {"epochs": 7}, "method_params": {"finetune": {"lr": 0.3}}},
        dataset="fashion_mnist",
    )
    assert cfg.train.epochs == 7
    assert cfg.train.batch_size == preset["train"]["batch_size"]  # the rest of the section stays
    # a method the user set is the user's alone; other methods keep the preset
    assert cfg.method_params["finetune"] == {"lr": 0.3}
    assert cfg.method_params["salun"] == preset["method_params"]["salun"]


def test_the_preset_is_not_changed_by_a_config() -> None:
    before = repr(DATASET_PRESETS["mnist"])
    cfg = build_config(dataset="mnist")
    cfg.method_params["finetune"]["epochs"] = 99
    assert repr(DATASET_PRESETS["mnist"]) == before
