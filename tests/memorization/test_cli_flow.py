"""`unlearnkit memorize` then `unlearnkit unlearn --method rum --forget memorization:...`, as a
user runs them (in-process, one import): scores on relabelled digits drive both the forget set
and RUM's split; a mismatched or missing score file is one clean error and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from unlearnkit.memorization import load_scores

BASE = "pretrain: false\npeft: full\nmodel_options: {width: 8}\nrelearn_max_epochs: 1\n"
NOISY = "dataset: noisy\ndataset_options: {base: digits, label_noise: 0.05}\n"


class Done:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


def cli(*args: str) -> Done:
    """The main app (``unlearn``) plus the ``memorize`` sub-command, as ``unlearnkit`` has them."""
    from unlearnkit.cli import app as main_app
    from unlearnkit.cli.memorize import memorize

    app = typer.Typer(pretty_exceptions_enable=False)
    app.registered_commands = list(main_app.registered_commands)
    app.command("memorize")(memorize)
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Done(result.exit_code, result.output)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Confidence scores of noisy digits written by `memorize --label-noise`."""
    root = tmp_path_factory.mktemp("flow")
    clean, noisy = root / "clean.yaml", root / "noisy.yaml"
    clean.write_text(BASE)
    noisy.write_text(BASE + NOISY)
    proc = cli(
        "memorize", "--method", "confidence", "--config", str(clean), "--label-noise", "0.05",
        "--epochs", "2", "--out", str(root / "mem"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "label_noise" in proc.stderr  # the hint to unlearn on the same relabelled data
    return root / "mem" / "scores.csv", clean, noisy


def test_label_noise_flag_scores_the_noisy_dataset(scored) -> None:
    path, _, _ = scored
    table = load_scores(path)
    assert table.meta["data"]["dataset"] == "noisy"
    assert table.meta["data"]["dataset_options"] == {"base": "digits", "label_noise": 0.05}
    assert table.meta["method"] == "confidence" and len(table) == 1438


def test_rum_on_a_memorization_forget_set_end_to_end(scored, tmp_path) -> None:
    path, _, noisy = scored
    out = tmp_path / "rum"
    proc = cli(
        "unlearn", "--method", "rum", "--config", str(noisy), "--epochs", "2",
        "--forget", f"memorization:mixed:30:{path}",
        "--param", f"scores=file:{path}",
        "--param", "medium={method: finetune, params: {epochs: 1}}",
        "--param", "high={method: neggrad_plus, params: {epochs: 1}}",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["original", "retrain", "rum"]
    assert results["config"]["method_params"]["rum"]["scores"] == f"file:{path}"
    # RUM's fine-tuning steps move every trainable (BN + head) parameter and nothing frozen
    assert results["summary"]["rum"]["params_touched_mean"] == results["trainable_params"]


@pytest.mark.parametrize(
    ("which", "args", "message"),
    [
        ("clean", ["--forget", "memorization:high:30:{path}"], "computed for other data"),
        ("noisy", ["--forget", "memorization:top:30:{path}"], "unknown memorization level"),
        ("noisy", ["--forget", "memorization:high:2000:{path}"], "count in 1..1437"),
        ("noisy", ["--param", "scores=file:{path}.gone"], "not found"),
        ("noisy", ["--param", "high={method: magic}"], "unknown method 'magic'"),
        ("noisy", ["--param", "config=configs/rum.yaml", "--param", "variant=x"], "no variant"),
    ],
)
def test_bad_input_is_one_clean_error(scored, tmp_path, which, args, message) -> None:
    path, clean, noisy = scored
    out = tmp_path / "never"
    config = clean if which == "clean" else noisy
    filled = [a.replace("{path}", str(path)) for a in args]
    proc = cli("unlearn", "--method", "rum", "--config", str(config), *filled, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_memorize_fz_writes_scores_and_resumes_from_its_cache(scored, tmp_path) -> None:
    _, clean, _ = scored
    args = ["memorize", "--config", str(clean), "--k", "3", "--epochs", "1"]
    first = cli(*args, "--out", str(tmp_path / "fz"))
    assert first.returncode == 0, first.stderr
    assert "3 trained now" in first.stderr
    table = load_scores(tmp_path / "fz" / "scores.csv")
    assert table.meta["method"] == "feldman_zhang" and table.meta["k"] == 3
    assert len(list((tmp_path / "fz" / "cache").glob("*/model_*.npz"))) == 3
    again = cli(*args, "--out", str(tmp_path / "fz"))
    assert "0 trained now" in again.stderr
    assert (
        load_scores(tmp_path / "fz" / "scores.csv")
        .score.nan_to_num(9)
        .equal(table.score.nan_to_num(9))
    )
