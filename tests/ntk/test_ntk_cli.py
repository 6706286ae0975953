"""`unlearnkit ntk` precompute / delete / status against a model directory."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from unlearnkit.cli.ntk import SERVED_FILE, app
from unlearnkit.ntk.deployment import STATE_FILE
from unlearnkit.ntk.state import NTKState

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, save_tiny_trained):
    out = tmp_path_factory.mktemp("model")
    save_tiny_trained(out)
    return out


def test_precompute_delete_status_and_refusals(model_dir):
    res = runner.invoke(app, ["precompute", "--from", str(model_dir), "--lam", "0.5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["delete", "--from", str(model_dir), "--ids", "3,5"])
    assert res.exit_code == 0, res.output
    assert (model_dir / SERVED_FILE).is_file()
    state_bytes = (model_dir / STATE_FILE).read_bytes()
    for ids, why in (
        ("5", "already deleted"),
        ("99999", "not in the training set"),
        ("x", "integers"),
    ):
        res = runner.invoke(app, ["delete", "--from", str(model_dir), "--ids", ids])
        assert res.exit_code == 2 and why in res.output, res.output
    assert (model_dir / STATE_FILE).read_bytes() == state_bytes  # nothing changed
    res = runner.invoke(app, ["status", "--from", str(model_dir)])
    assert res.exit_code == 0 and "deleted: 2 [3, 5]" in res.output and "current" in res.output
    state = NTKState.load(model_dir / STATE_FILE)
    assert state.deleted_ids.tolist() == [3, 5]


def test_stale_state_is_refused(model_dir, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    runner.invoke(app, ["precompute", "--from", str(other)])
    from unlearnkit.models.checkpoint import load_state, save_state

    initial, meta = load_state(other / "initial.safetensors")
    initial = {k: v + 0.01 if v.is_floating_point() else v for k, v in initial.items()}
    save_state(other / "initial.safetensors", initial, meta)
    before = (other / STATE_FILE).read_bytes()
    res = runner.invoke(app, ["delete", "--from", str(other), "--ids", "1"])
    assert res.exit_code == 2 and "stale" in res.output
    assert (other / STATE_FILE).read_bytes() == before
    assert torch.is_tensor(NTKState.load(other / STATE_FILE).gram)


def _main_app():
    from unlearnkit.cli import app as main_app

    return main_app


def _unlearn(tmp_path, config: str, *flags: str):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config)
    out = tmp_path / "out"
    res = runner.invoke(
        _main_app(),
        ["unlearn", "--method", "fast_ntk", "--config", str(cfg), "--out", str(out), *flags],
    )
    return res, out


FAST = (
    "dataset: synthetic\npretrain: false\ntrain: {epochs: 3, lr: 0.05}\nrelearn_max_epochs: 2\n"
    "dataset_options: {n_train: 300, n_test: 100, image_size: 8, channels: 1, num_classes: 5}\n"
)


@pytest.mark.parametrize(
    "config",
    [
        "model: smallcnn\nmodel_options: {width: 8}\npeft: bn\n",
        "model: vit_tiny_vpt\nmodel_options: {depth: 1, num_prompts: 2}\npeft: prompts\n",
    ],
    ids=["smallcnn-bn", "vit-prompts"],
)
def test_unlearn_cli_runs_fast_ntk_end_to_end(tmp_path, config):
    import json

    res, out = _unlearn(tmp_path, config + FAST, "--forget", "class:3")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    row = next(r for r in doc["runs"] if r["method"] == "fast_ntk")
    assert "relearn_epochs" in row  # relearn time reported (None = not back within the max)
    assert 0 < row["params_touched"] <= doc["trainable_params"] < doc["total_params"]
    assert row["acc"]["forget"] <= 5.0  # the linearized model retrained on D_r drops class 3


def test_unlearn_cli_refuses_bn_on_a_vit_and_writes_nothing(tmp_path):
    res, out = _unlearn(
        tmp_path, "model: vit_tiny_vpt\nmodel_options: {depth: 1}\npeft: bn\n" + FAST
    )
    assert res.exit_code == 2 and "BatchNorm" in res.output, res.output
    assert not out.exists()


def test_time_budget_stops_with_exit_3_and_a_rerun_resumes(model_dir, tmp_path, monkeypatch):
    import shutil

    import unlearnkit.ntk.precompute as pre

    other = tmp_path / "budget"
    shutil.copytree(model_dir, other)
    (other / STATE_FILE).unlink(missing_ok=True)
    clock = iter(range(0, 10_000, 1000))  # every reading of the clock is 1000 s later
    monkeypatch.setattr(pre.time, "monotonic", lambda: float(next(clock)))
    args = ["precompute", "--from", str(other), "--shard-size", "16", "--time-budget", "5"]
    res = runner.invoke(app, args)
    assert res.exit_code == 3 and "stopped after 0 of" in res.output, res.output
    assert not (other / STATE_FILE).exists() and any(other.glob("*.parts/shard-*"))
    monkeypatch.undo()
    res = runner.invoke(app, ["precompute", "--from", str(other), "--shard-size", "16"])
    assert res.exit_code == 0, res.output
    assert not any(other.glob("*.parts"))  # the cache is removed once the state is saved
    done = NTKState.load(other / STATE_FILE)
    plain = tmp_path / "plain"
    shutil.copytree(other, plain)
    runner.invoke(app, ["precompute", "--from", str(plain), "--shard-size", "16"])
    whole = NTKState.load(plain / STATE_FILE)  # the same shards, uninterrupted
    assert torch.equal(done.gram, whole.gram) and torch.equal(done.inverse, whole.inverse)


def test_precompute_records_the_target_and_defaults_match_the_method(model_dir, tmp_path):
    import shutil

    from unlearnkit.cli import ntk as cli_ntk
    from unlearnkit.methods.fast_ntk import FastNTKParams

    defaults = FastNTKParams()
    assert (
        defaults.target,
        defaults.target_scale,
    ) == (cli_ntk.DEFAULT_TARGET, cli_ntk.DEFAULT_TARGET_SCALE)
    other = tmp_path / "scaled"
    shutil.copytree(model_dir, other)
    (other / STATE_FILE).unlink(missing_ok=True)
    args = ["precompute", "--from", str(other), "--target", "scaled", "--target-scale", "7"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert NTKState.load(other / STATE_FILE).target_scale == 7.0
    res = runner.invoke(app, ["delete", "--from", str(other), "--ids", "3"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["status", "--from", str(other)])
    assert "target: scaled:7.0" in res.output and "current" in res.output, res.output
    res = runner.invoke(app, ["precompute", "--from", str(other), "--target", "big"])
    assert res.exit_code == 2 and "unknown NTK target" in res.output, res.output
