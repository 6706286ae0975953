"""Per-dataset presets: a base under the user's settings, never mixed into a user's own set."""

from __future__ import annotations

from unlearnkit.config import build_config
from unlearnkit.recipe.presets import DATASET_PRESETS, ENSEMBLE_PRESETS


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


def test_ensembles_pretrain_with_the_data_sets_preset_unless_given() -> None:
    from unlearnkit.exact import EnsembleRecipe
    from unlearnkit.training import TrainConfig

    preset = ENSEMBLE_PRESETS["fashion_mnist"]["pretrain_config"]
    assert EnsembleRecipe(dataset="fashion_mnist").pretrain_config.epochs == preset["epochs"]
    assert EnsembleRecipe(dataset="fashion_mnist").pretrain_config.batch_size == 128
    assert EnsembleRecipe().pretrain_config.epochs == 20  # digits: the built-in recipe
    given = EnsembleRecipe(dataset="fashion_mnist", pretrain_config=TrainConfig(epochs=2))
    assert given.pretrain_config.epochs == 2 and given.pretrain_config.batch_size == 64


def test_s3t_cli_uses_the_stage_preset_and_flags_win(tmp_path) -> None:
    import sys
    from pathlib import Path

    import typer
    from typer.testing import CliRunner

    from unlearnkit.cli.exact import mount
    from unlearnkit.exact import load_ensemble

    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from test_mnist_idx import write_idx_set

    write_idx_set(tmp_path / "idx", n_train=60, n_test=10)
    app = typer.Typer()
    app.command("noop")(lambda: None)
    mount(app)
    base = ["s3t", "train", "--dataset", "fashion_mnist", "--data-dir", str(tmp_path / "idx"),
            "--no-pretrain", "--shards", "2", "--slices", "2", "--rank", "2",
            "--threads", "1"]  # fmt: skip
    stage = ENSEMBLE_PRESETS["fashion_mnist"]["train"]
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    train = load_ensemble(tmp_path / "a").config.train
    assert (train.epochs, train.lr, train.batch_size) == (
        stage["epochs"], stage["lr"], stage["batch_size"])  # fmt: skip
    assert train.schedule == stage["schedule"]
    config = load_ensemble(tmp_path / "a").config  # flags gave m and r; the preset the layers
    assert (config.num_shards, config.lora_rank) == (2, 2)
    assert config.adapt == ENSEMBLE_PRESETS["fashion_mnist"]["shape"]["adapt"]
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b"), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    train = load_ensemble(tmp_path / "b").config.train
    assert train.epochs == 2 and train.batch_size == stage["batch_size"]  # field by field


def test_ensemble_shape_flags_win_over_the_preset_field_by_field() -> None:
    from unlearnkit.cli.exact import ensemble_shape

    shape = ENSEMBLE_PRESETS["fashion_mnist"]["shape"]
    assert ensemble_shape("fashion_mnist", None, None, None) == shape
    assert ensemble_shape("fashion_mnist", 4, None, None) == {**shape, "num_shards": 4}
    assert ensemble_shape("fashion_mnist", None, 2, "all") == {**shape, "lora_rank": 2,
                                                                "adapt": None}  # fmt: skip
    assert ensemble_shape("fashion_mnist", None, None, "layer4.*")["adapt"] == "layer4.*"
    # a data set without a preset keeps the built-in shape: 5 shards, rank 16, every layer
    assert ensemble_shape("digits", None, None, None) == {
        "num_shards": 5, "lora_rank": 16, "adapt": None}  # fmt: skip
    assert ensemble_shape("digits", None, None, "2")["adapt"] == 2
    # the preset's "last 3" grows to the slices asked for (one disjoint group per S3T stage);
    # an --adapt given is kept as it is, and S3T refuses it if too small
    assert ensemble_shape("fashion_mnist", None, None, None, slices=5)["adapt"] == 5
    assert ensemble_shape("fashion_mnist", None, None, None, slices=2)["adapt"] == shape["adapt"]
    assert ensemble_shape("fashion_mnist", None, None, "2", slices=5)["adapt"] == 2
