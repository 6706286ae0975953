"""``--workers N`` / ``--loader-workers N`` on the heavy commands that read data (issue 25):
accepted, and the same results as 0 workers (the batches are planned before any worker
starts). ``s3t|sisa`` and ``ntk`` are checked in tests/exact/test_exact_cli_streaming.py
and tests/ntk/test_streamed_inputs.py."""

from __future__ import annotations

import json

import typer
import yaml
from typer.testing import CliRunner


def _app() -> typer.Typer:
    from unlearnkit.cli.audit import mount as mount_audit
    from unlearnkit.cli.memorize import memorize

    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """A root so each command stays a sub-command, as on the real app."""

    app.command("memorize")(memorize)
    mount_audit(app)
    return app


def _run(*args: str) -> None:
    res = CliRunner().invoke(_app(), list(args))
    assert res.exit_code == 0, res.output


def test_memorize_workers_give_the_same_scores(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pretrain: false\npeft: full\nmodel_options: {width: 4}\n")
    scores = []
    for workers in ("0", "2"):
        out = tmp_path / f"mem{workers}"
        args = ["--config", str(config), "--subset", "150", "--epochs", "1", "--threads", "1"]
        _run("memorize", "--method", "confidence", *args, "--out", str(out), "--workers", workers)
        scores.append((out / "scores.csv").read_text())
    assert scores[0] == scores[1] and len(scores[0].splitlines()) == 151


def test_audit_loader_workers_give_the_same_audit(tmp_path):
    config = tmp_path / "tiny.yaml"
    tiny = {"model_options": {"width": 4}, "dataset_options": {"subset": 200}, "peft": "full",
            "pretrain": False, "train": {"epochs": 2, "lr": 0.05, "batch_size": 32},
            "method_params": {"neggrad": {"epochs": 1}}}  # fmt: skip
    config.write_text(yaml.safe_dump(tiny))
    summaries = []
    for workers in ("0", "2"):
        out = tmp_path / f"audit{workers}"
        _run("audit", "--forget", "class:2", "--methods", "neggrad", "--k", "3", "--n", "2",
             "--threads", "1", "--n-boot", "20", "--config", str(config), "--out", str(out),
             "--loader-workers", workers)  # fmt: skip
        summaries.append(json.loads((out / "results.json").read_text())["summary"])
    assert summaries[0] == summaries[1]
