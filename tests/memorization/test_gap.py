"""The train-test gap check and train-until-gap: the full-training memorization setting must
say whether the original memorizes, and pick the first epoch count of a grid that does."""

from __future__ import annotations

import pytest

from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.memorization.gap import (
    GapCheck,
    check_epoch_grid,
    gap_check,
    train_until_gap,
    with_epochs,
)
from unlearnkit.recipe import load_bundle
from unlearnkit.recipe.scaling import resolve_epochs


def test_a_gap_below_the_target_is_reported_as_not_reached():
    wide, narrow = GapCheck(16, 96.4, 89.3, 5.0), GapCheck(8, 91.0, 90.4, 5.0)
    assert wide.reached and wide.gap == pytest.approx(7.1)
    assert not narrow.reached and narrow.gap == pytest.approx(0.6)
    assert "NOT reached" in narrow.message() and "0.6 points" in narrow.message()
    assert "NOT" not in wide.message()
    assert narrow.as_dict() | {"gap": 0} == {
        "epochs": 8, "train_acc": 91.0, "test_acc": 90.4, "target": 5.0, "gap": 0,
        "reached": False,
    }  # fmt: skip


@pytest.mark.parametrize("grid", [[], [0, 4], [8, 4], [4, 4]])
def test_a_bad_epoch_grid_is_refused(grid):
    with pytest.raises(UnlearnkitError, match="increasing order"):
        check_epoch_grid(grid)


def test_a_chosen_epoch_count_is_not_rescaled_by_the_preset():
    """Fashion-MNIST's preset scales its training epochs with the size of D; a count picked by
    the gap search is a fixed recipe that FZ's subset models and every retrain repeat."""
    cfg = build_config(dataset="fashion_mnist", pretrain=False, peft="full")
    assert "train" in cfg.epoch_scaling.base
    assert resolve_epochs(cfg, 1000, None).train.epochs != 16
    fixed = with_epochs(cfg, 16)
    assert "train" not in fixed.epoch_scaling.base
    assert resolve_epochs(fixed, 1000, None).train.epochs == 16
    assert fixed.train.lr == cfg.train.lr and cfg.train.epochs != 16  # the input is unchanged


@pytest.fixture(scope="module")
def tiny_digits():
    cfg = build_config(
        dataset="digits",
        dataset_options={"subset": 240},
        pretrain=False,
        peft="full",
        model_options={"width": 8},
        train={"epochs": 1, "lr": 0.05, "batch_size": 32},
    )
    return cfg, load_bundle(cfg)


def test_train_until_gap_stops_at_the_first_count_that_reaches_it(tiny_digits):
    cfg, bundle = tiny_digits
    # one epoch on 240 samples leaves the model under-fitted (no gap); 40 fit D
    chosen, trained, checks = train_until_gap(cfg, bundle, 3.0, [1, 40, 80])
    assert [c.epochs for c in checks] == [1, 40]
    assert not checks[0].reached and checks[1].reached
    assert chosen.train.epochs == 40
    assert checks[1].train_acc > 97.0
    again = gap_check(trained.model, bundle, 3.0, 40)  # the returned model is the one checked
    assert again.gap == pytest.approx(checks[1].gap)


def test_train_until_gap_says_when_no_count_reaches_it(tiny_digits):
    cfg, bundle = tiny_digits
    chosen, _, checks = train_until_gap(cfg, bundle, 101.0, [1, 2])
    assert [c.epochs for c in checks] == [1, 2] and not any(c.reached for c in checks)
    assert chosen.train.epochs == 2  # the last tried


def _memorize(*args: str):
    """``unlearnkit memorize`` in-process (the sub-command alone)."""
    import typer
    from typer.testing import CliRunner

    from unlearnkit.cli.memorize import memorize

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("memorize")(memorize)
    app.command("other")(lambda: None)  # two commands: typer keeps the sub-command name
    return CliRunner().invoke(app, ["memorize", *args])


@pytest.fixture()
def full_config(tmp_path):
    path = tmp_path / "full.yaml"
    path.write_text("pretrain: false\npeft: full\nmodel_options: {width: 8}\n")
    return path


def test_memorize_trains_until_the_gap_and_records_it(full_config, tmp_path):
    out = tmp_path / "mem"
    result = _memorize(
        "--method", "confidence", "--config", str(full_config), "--subset", "240",
        "--epoch-grid", "1,40", "--min-gap", "3", "--threads", "1", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "1 epochs): target 3 NOT reached" in said
    assert "40 epochs): target 3 reached" in said
    assert "unlearn with --epochs 40" in said
    assert "the original: train-test gap" in said  # the proxy run is checked too
    from unlearnkit.memorization import load_scores

    meta = load_scores(out / "scores.csv").meta
    assert meta["gap"]["epochs"] == 40 and meta["gap"]["target"] == 3
    assert meta["gap"]["gap"] == pytest.approx(meta["gap"]["train_acc"] - meta["gap"]["test_acc"])


def test_memorize_refuses_a_bad_grid_before_any_work(full_config, tmp_path):
    out = tmp_path / "mem"
    result = _memorize("--config", str(full_config), "--epoch-grid", "16,8", "--out", str(out))
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "error:" in said and "increasing order" in said
    assert "Traceback" not in result.output and not out.exists()
    result = _memorize("--config", str(full_config), "--epoch-grid", "8,x", "--out", str(out))
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "comma-separated" in said and not out.exists()
