"""Epoch counts that scale with the data (recipe/scaling.py) and the relative relearn threshold:
a subset run keeps the full run's optimisation steps, and its relearn bar sits below the
original model's own accuracy."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.recipe import load_bundle, load_trained, save_trained, sized_for, train_original
from unlearnkit.recipe.presets import DATASET_PRESETS
from unlearnkit.recipe.scaling import resolve_epochs

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from test_mnist_idx import write_idx_set

PRESET = DATASET_PRESETS["fashion_mnist"]
REF = PRESET["epoch_scaling"]["reference_size"]
REF_PUBLIC = PRESET["epoch_scaling"]["reference_public_size"]


def _steps(epochs: int, n: int, batch: int) -> int:
    return epochs * math.ceil(n / batch)


@pytest.mark.parametrize("pool", [600, 3000, 10_000, 30_000])
def test_steps_stay_the_full_sets_across_subset_sizes(pool: int) -> None:
    cfg = build_config(dataset="fashion_mnist")
    d, public = pool - round(0.3 * pool), round(0.3 * pool)
    sized = resolve_epochs(cfg, d, public)
    for section, n, ref in (("train", d, REF), ("pretrain_config", public, REF_PUBLIC)):
        batch = PRESET[section]["batch_size"]
        want = _steps(PRESET[section]["epochs"], ref, batch)
        got = _steps(getattr(sized, section).epochs, n, batch)
        assert abs(got - want) <= math.ceil(n / batch) / 2  # within half an epoch: rounding
        assert sized.epoch_scaling.steps[section] == got  # recorded
    # methods and the relearn budget grow by D's ratio too
    ratio = math.ceil(REF / 128) / math.ceil(d / 128)
    finetune = PRESET["method_params"]["finetune"]["epochs"]
    assert sized.method_params["finetune"]["epochs"] == min(1000, max(1, round(finetune * ratio)))
    assert sized.method_params["rum"]["medium"]["params"]["epochs"] > 1
    assert sized.relearn_max_epochs > PRESET["relearn_max_epochs"]
    assert (sized.epoch_scaling.size, sized.epoch_scaling.public_size) == (d, public)


def test_the_full_set_keeps_the_presets_counts() -> None:
    sized = resolve_epochs(build_config(dataset="fashion_mnist"), REF, REF_PUBLIC)
    assert sized.train.epochs == PRESET["train"]["epochs"]
    assert sized.pretrain_config.epochs == PRESET["pretrain_config"]["epochs"]
    assert sized.method_params["scrub"] == PRESET["method_params"]["scrub"]
    assert sized.relearn_max_epochs == PRESET["relearn_max_epochs"]


def test_a_larger_set_stops_at_the_floor() -> None:
    sized = resolve_epochs(build_config(dataset="fashion_mnist"), 10 * REF, 10 * REF_PUBLIC)
    assert sized.train.epochs == 1 and sized.method_params["finetune"]["epochs"] == 1
    floor = build_config(
        {"epoch_scaling": {**PRESET["epoch_scaling"], "min_epochs": 3}}, dataset="fashion_mnist"
    )
    sized = resolve_epochs(floor, 10 * REF, 10 * REF_PUBLIC)
    assert sized.train.epochs == 3 and sized.pretrain_config.epochs == 3
    tiny = resolve_epochs(build_config(dataset="fashion_mnist"), 20, 10)
    assert tiny.pretrain_config.epochs == tiny.epoch_scaling.max_epochs  # and a ceiling


def test_resolving_is_once_and_survives_a_saved_config() -> None:
    cfg = build_config(dataset="fashion_mnist")
    sized = resolve_epochs(cfg, 2100, 900)
    assert resolve_epochs(sized, 42_000, 18_000) is sized  # recorded: never resized
    again = build_config(sized.model_dump(mode="json"))  # a saved config, preset and all
    assert again.train == sized.train and again.method_params == sized.method_params
    assert again.epoch_scaling == sized.epoch_scaling
    # a value given now wins over the recorded scaling, and only that one
    mine = build_config(
        sized.model_dump(mode="json", exclude={"method_params"}),
        method_params={"finetune": {"lr": 0.1}},
    )
    assert mine.method_params["finetune"] == {"lr": 0.1}
    assert "method_params.finetune" not in mine.epoch_scaling.base
    assert mine.method_params["salun"] == sized.method_params["salun"]


def test_counts_the_user_gives_are_not_scaled() -> None:
    cfg = build_config(
        {"train": {"epochs": 3}, "method_params": {"finetune": {"epochs": 2}}},
        dataset="fashion_mnist",
    )
    assert "train" not in cfg.epoch_scaling.base
    assert "method_params.finetune" not in cfg.epoch_scaling.base
    sized = resolve_epochs(cfg, 2100, 900)
    assert sized.train.epochs == 3 and sized.method_params["finetune"]["epochs"] == 2
    assert sized.pretrain_config.epochs > PRESET["pretrain_config"]["epochs"]
    off = build_config({"epoch_scaling": None}, dataset="fashion_mnist")
    assert resolve_epochs(off, 2100, 900).train.epochs == PRESET["train"]["epochs"]


def test_digits_has_no_scaling_and_the_absolute_threshold() -> None:
    cfg = build_config()
    assert cfg.epoch_scaling is None
    assert (cfg.relearn_threshold, cfg.relearn_threshold_fraction) == (90.0, None)
    assert resolve_epochs(cfg, 100, 30) is cfg


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"epoch_scaling": {"reference_size": 0}}, "epoch_scaling.reference_size"),
        ({"epoch_scaling": {"reference_size": 10, "min_epochs": 0}}, "epoch_scaling.min_epochs"),
        ({"epoch_scaling": {"reference_size": 10, "base": {"trian": 2}}}, "epoch_scaling.base"),
        ({"epoch_scaling": {"reference_size": 10, "bogus": 1}}, "epoch_scaling.bogus"),
        ({"epoch_scaling": {"reference_size": 10, "min_epochs": 5, "max_epochs": 2}}, "epoch_"),
        ({"relearn_threshold_fraction": 1.5}, "relearn_threshold_fraction"),
        ({"relearn_threshold_fraction": 0}, "relearn_threshold_fraction"),
        ({"relearn_threshold": 80, "relearn_threshold_fraction": 0.9}, "relearn_threshold_frac"),
    ],
)
def test_bad_values_fail_naming_the_field(data: dict, field: str) -> None:
    for dataset in ("digits", "fashion_mnist"):
        with pytest.raises(UnlearnkitError, match=rf"^invalid {field}"):
            build_config(data, dataset=dataset)


def test_an_absolute_threshold_given_replaces_the_presets_fraction() -> None:
    preset = build_config(dataset="fashion_mnist")
    assert preset.relearn_threshold is None
    assert preset.relearn_threshold_fraction == PRESET["relearn_threshold_fraction"]
    assert preset.relearn_target(80.0) == pytest.approx(80.0 * preset.relearn_threshold_fraction)
    mine = build_config({"relearn_threshold": 85.0}, dataset="fashion_mnist")
    assert (mine.relearn_threshold, mine.relearn_threshold_fraction) == (85.0, None)
    assert mine.relearn_target(70.0) == 85.0
    with pytest.raises(UnlearnkitError, match="original model's accuracy"):
        preset.relearn_target(None)


def test_a_subset_of_idx_files_is_sized_and_recorded_with_the_model(tmp_path) -> None:
    """Fashion-MNIST's format from files the test writes (nothing is downloaded): the counts
    are resolved for the loaded subset, trained with, and saved in the model's metadata."""
    write_idx_set(tmp_path / "idx", n_train=120, n_test=20)
    cfg = build_config(
        {
            "dataset_options": {"subset": 80},
            "model_options": {"width": 4},
            # a small reference (5 and 2 batches of 128), so the scaled recipe stays cheap
            "epoch_scaling": {"reference_size": 560, "reference_public_size": 240},
        },
        dataset="fashion_mnist",
        data_dir=str(tmp_path / "idx"),
    )
    bundle = load_bundle(cfg)
    sized = sized_for(cfg, bundle)
    assert (sized.epoch_scaling.size, sized.epoch_scaling.public_size) == (
        len(bundle.train),
        len(bundle.public),
    )
    for section, ref, n in (
        ("train", 560, len(bundle.train)),
        ("pretrain_config", 240, len(bundle.public)),
    ):
        want = PRESET[section]["epochs"] * math.ceil(ref / 128) / math.ceil(n / 128)
        assert getattr(sized, section).epochs == round(want) > PRESET[section]["epochs"]
    trained = train_original(cfg, bundle, 0)  # resolves on its own, the same way
    save_trained(tmp_path / "model", trained, cfg, bundle)
    _, saved, _ = load_trained(tmp_path / "model")
    assert saved.epoch_scaling == sized.epoch_scaling
    assert saved.train == sized.train and saved.pretrain_config == sized.pretrain_config
