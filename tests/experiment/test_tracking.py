"""MLflow logging (the tracking extra): what a run logs can be read back."""

from __future__ import annotations

import sys

import pytest

from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import run_experiment
from unlearnkit.report import write_run
from unlearnkit.tracking import log_run, require_mlflow, run_metrics


def test_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail
    with pytest.raises(UnlearnkitError, match=r"unlearnkit\[tracking\]"):
        require_mlflow()


def test_run_metrics_flattens_numbers_only():
    row = {
        "method": "salun",
        "seed": 1,
        "acc": {"forget": 12.5},
        "relearn_epochs": None,
        "tow": 0.9,
        "params_touched": 485,
    }
    assert run_metrics(row) == {
        "salun.acc.forget": 12.5,
        "salun.tow": 0.9,
        "salun.params_touched": 485.0,
    }


def test_a_run_logged_to_mlflow_reads_back(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = build_config(
        methods=["neggrad"],
        seeds=[0, 1],
        train={"epochs": 2},
        pretrain_config={"epochs": 1},
        relearn_max_epochs=1,
    )
    results = run_experiment(cfg)
    write_run(results, tmp_path / "run")
    run_id = log_run(results, tmp_path / "run", "unit-test")

    client = mlflow.tracking.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["forget"] == "random:0.1"
    history = client.get_metric_history(run_id, "neggrad.acc.forget")
    rows = [r for r in results["runs"] if r["method"] == "neggrad"]
    assert sorted((m.step, m.value) for m in history) == sorted(
        (r["seed"], pytest.approx(r["acc"]["forget"])) for r in rows
    )
    assert run.data.metrics["summary.neggrad.tow_mean"] == pytest.approx(
        results["summary"]["neggrad"]["tow_mean"]
    )
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"results.json", "report.md"} <= artifacts
