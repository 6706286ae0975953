"""benchmarks/s3t_latency.py end to end on a tiny saved digits ensemble, and s3t_scale.py's
``--adapt`` (passed to both schemes, recorded, kept by the saved ensemble)."""

import importlib.util
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit.exact import S3TConfig, S3TEnsemble

BENCH = Path(__file__).parents[2] / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """s3t_scale.py on a digits subset, blocks on the last 2 layers, the S3T ensemble saved."""
    root = tmp_path_factory.mktemp("scale")
    done = _run("s3t_scale.py", "--dataset", "digits", "--subset", "600", "--shards", "2",
                "--slices", "2", "--sequences", "2", "--rank", "4", "--adapt", "2",
                "--pretrain-epochs", "1", "--eval-size", "0", "--checkpoints", "2",
                "--threads", "1", "--save", str(root / "ens"),
                "--out", str(root / "scale"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def test_scale_passes_adapt_to_both_schemes():
    spec = importlib.util.spec_from_file_location("s3t_scale", BENCH / "s3t_scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    base = dict(epochs=1, lr=0.01, batch_size=32, shards=2, slices=3, sequences=2, rank=4,
                policy="dead_shard", head_init="backbone")  # fmt: skip
    for given, expected in [("3", 3), ("all", None), ("fc.*", "fc.*")]:
        cfgs = scale.configs(type("Args", (), {**base, "adapt": given})())
        assert [c.adapt for c in cfgs.values()] == [expected, expected]
    default = scale.configs(type("Args", (), {**base, "adapt": None})())
    assert [c.adapt for c in default.values()] == [S3TConfig.model_fields["adapt"].default] * 2


@pytest.mark.benchmark
def test_scale_records_adapt_and_the_saved_ensemble_keeps_it(saved):
    res = json.loads((saved / "scale" / "results.json").read_text())
    assert res["adapt"] == 2 and res["args"]["adapt"] == "2"
    assert "adapt 2" in (saved / "scale" / "report.md").read_text()
    ens = S3TEnsemble.load(saved / "ens")  # reloads its subset from its data reference
    assert ens.config.adapt == 2
    assert ens.meta["dataset_options"] == {"subset": 600}


def _refused(monkeypatch, capsys, script: str, *args: str) -> str:
    """Run ``script`` as ``__main__`` in this process (no interpreter start-up): it must exit
    with code 2 and one ``error:`` line; returns that line."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(BENCH / script), run_name="__main__")
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_scale_refuses_an_adapt_too_shallow_for_the_slices_before_training(
    tmp_path, monkeypatch, capsys
):
    err = _refused(monkeypatch, capsys, "s3t_scale.py", "--dataset", "digits", "--subset",
                   "300", "--shards", "2", "--slices", "3", "--adapt", "2",
                   "--out", str(tmp_path / "out"))  # fmt: skip
    assert err.startswith("error: adapt = 2")
    assert not (tmp_path / "out").exists()


def _latency(saved: Path, out: Path, http_requests: int) -> dict:
    done = _run("s3t_latency.py", "--ensemble", str(saved / "ens"), "--reps", "5",
                "--warmup", "1", "--http-requests", str(http_requests), "--threads", "1",
                "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "latency.md").read_text().startswith("# Serving latency: s3t on digits")
    return json.loads((out / "latency.json").read_text())


@pytest.mark.benchmark
def test_latency_in_process_and_floor(saved, tmp_path):
    res = _latency(saved, tmp_path, 0)
    e = res["ensemble"]
    assert (e["scheme"], e["shards"], e["adapt"], e["served_shards"]) == ("s3t", 2, 2, 2)
    assert res["batch"] == 16
    for path in ("packed", "packed_vmap", "loop"):  # the vmap-only pass timed beside them
        s = res["in_process"][path]
        assert s["n"] == 5 and s["p99_ms"] is None  # no p99 from 5 samples
        assert 0 < s["p50_ms"] <= s["max_ms"]
    assert res["in_process"]["max_abs_logit_diff"] < 1e-5
    f = res["floor"]
    assert f["flops"] > 0 and f["floor_ms"] > 0 and f["rate_gflop_per_s"] > 0
    assert f["p50_over_floor"] == pytest.approx(
        res["in_process"]["packed"]["p50_ms"] / f["floor_ms"]
    )
    assert "http" not in res
    t = res["targets"]
    assert t["http_p50"]["met"] is None
    assert isinstance(t["in_process_p50"]["met"], bool) and t["within_floor"]["limit"] == 1.5
    m = res["machine"]
    assert m["threads"] == 1 and m["device"] == "cpu" and m["torch"]
    assert len(m["load_before"]) == len(m["load_after"]) == 3


@pytest.mark.benchmark
def test_latency_over_http_with_a_real_server(saved, tmp_path):
    res = _latency(saved, tmp_path, 5)
    h = res["http"]
    assert h["n"] == 5 and h["clients"] == 1 and 0 < h["p50_ms"] <= h["max_ms"]
    assert h["server_threads"] == 1 and h["batch_window_ms"] >= 0
    assert isinstance(res["targets"]["http_p50"]["met"], bool)


def test_latency_refuses_a_directory_without_an_ensemble(tmp_path, monkeypatch, capsys):
    _refused(monkeypatch, capsys, "s3t_latency.py", "--ensemble", str(tmp_path / "none"),
             "--out", str(tmp_path / "out"))  # fmt: skip
    assert not (tmp_path / "out").exists()
