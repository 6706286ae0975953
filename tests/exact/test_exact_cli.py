"""``unlearnkit s3t|sisa``: the full flow, receipts, and bad input (exit 2, nothing changed)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unlearnkit.exact import load_ensemble

FAST = [
    "--no-pretrain", "--shards", "2", "--slices", "2", "--epochs", "1", "--rank", "4",
    "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_dir(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("s3t") / "ens"
    res = CliRunner().invoke(cli, ["s3t", "train", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    return out


def _snapshot(directory) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_train_delete_status_predict_retrain(cli, trained_dir, tmp_path) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(trained_dir, d)
    runner = CliRunner()
    res = runner.invoke(cli, ["s3t", "status", "--from", str(d)])
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert status["live_shards"] == [0, 1] and status["version"] == 0
    victim = load_ensemble(d).partition.members(0, 0)[0]
    res = runner.invoke(cli, ["s3t", "delete", "--from", str(d), "--ids", str(victim)])
    assert res.exit_code == 0, res.output
    receipt = json.loads(res.stdout.splitlines()[0])
    assert receipt["sample_id"] == victim and receipt["shard"] == 0 and receipt["version"] == 1
    assert receipt["switched_off"] and receipt["request_id"]
    ens = load_ensemble(d)  # the base itself is rewritten: the deletion is in it
    assert victim in ens.partition.deleted and not ens.alive[0].all()
    # idempotent: the record says who deleted it, nothing on disk changes
    before = _snapshot(d)
    res = runner.invoke(cli, ["s3t", "delete", "--from", str(d), "--ids", str(victim)])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout.splitlines()[0])
    assert again == {"sample_id": victim, "already_deleted": True,
                     "request_id": receipt["request_id"], "client": "cli"}  # fmt: skip
    assert "already deleted" in res.stderr and _snapshot(d) == before
    res = runner.invoke(
        cli,
        ["s3t", "predict", "--from", str(d), "--save", str(tmp_path / "p.csv"), "--threads", "1"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["samples"] == 359
    assert (tmp_path / "p.csv").read_text().startswith("id,prediction,label\n")
    res = runner.invoke(cli, ["s3t", "retrain", "--from", str(d), "--pending", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["retrained"] == [0] and load_ensemble(d).alive.all()


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["s3t", "delete", "--from", "{d}", "--ids", "3,99999"],
            "sample id 99999 is not in the training",
        ),
        (["s3t", "delete", "--from", "{d}", "--ids", "3,x"], "expected comma-separated integers"),
        (["s3t", "delete", "--from", "{d}", "--ids", "@/nonexistent"], "cannot read the file"),
        (["sisa", "status", "--from", "{d}"], "holds a 's3t' ensemble, not 'sisa'"),
        (["s3t", "train", "--out", "{d}", *FAST], "already holds an ensemble"),
        (["s3t", "retrain", "--from", "{d}", "--shard", "9"], "shard 9 does not exist"),
        (["s3t", "retrain", "--from", "{d}"], "exactly one of --shard N or --pending"),
        (["s3t", "predict", "--from", "{d}", "--split", "dev"], "choose test or train"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(cli, trained_dir, args, message) -> None:
    before = _snapshot(trained_dir)
    res = CliRunner().invoke(cli, [a.format(d=trained_dir) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert _snapshot(trained_dir) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sequences", "3"], "exceeds the 2 orders of 2 slices"),
        (["--prior", "0.5,0.6"], "sums to 1.1"),
        (["--shards", "800"], "exceeds the 1438 training samples"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--executor", "dask"], "unknown executor 'dask'"),
        (["--weights", "/nonexistent.safetensors"], "no such file"),
        (["--epochs", "-1"], "greater than or equal to 0"),
    ],
)
def test_bad_training_input_writes_nothing(cli, tmp_path, args, message) -> None:
    out = tmp_path / "new"
    res = CliRunner().invoke(cli, ["s3t", "train", "--out", str(out), *FAST, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_sisa_train_and_capacity(cli, tmp_path) -> None:
    out = tmp_path / "sisa"
    runner = CliRunner()
    res = runner.invoke(cli, ["sisa", "train", "--out", str(out), *FAST, "--aggregation", "vote"])
    assert res.exit_code == 0, res.output
    victim = load_ensemble(out).partition.members(1, 1)[0]
    res = runner.invoke(cli, ["sisa", "delete", "--from", str(out), "--ids", str(victim)])
    assert json.loads(res.stdout.splitlines()[0])["retrained_shards"] == [1]  # eager
    res = runner.invoke(cli, ["s3t", "capacity", "--shards", "5", "--slices", "4",
                              "--sequences", "4", "--trials", "500"])  # fmt: skip
    cap = json.loads(res.stdout)
    assert cap["s3t_theory"] == pytest.approx(71.95, abs=0.01)
    assert abs(cap["s3t_simulated"] - cap["s3t_theory"]) < 0.05 * cap["s3t_theory"]
    assert cap["ratio_simulated"] > 1.4
