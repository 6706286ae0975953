"""Score files, forget-set selection by memorization, and the `memorize` command."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.forget import select_forget
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.memorization import ScoreTable, load_scores, save_scores


def _train() -> ArraySplit:
    return ArraySplit(
        torch.arange(20.0).reshape(20, 1, 1, 1), torch.arange(20) % 3, torch.arange(20)
    )


def _scores(train: ArraySplit, path, direction: int = 1):
    score = torch.tensor([float((7 * i) % 20) for i in range(20)])  # a permutation of 0..19
    table = ScoreTable(
        train.ids,
        score,
        torch.full((20,), float("nan")),
        {"direction": direction, "train_fingerprint": train.fingerprint()},
    )
    return save_scores(table, path), score


def test_round_trip_keeps_ids_scores_and_nan(tmp_path) -> None:
    train = _train()
    path, score = _scores(train, tmp_path / "s.csv")
    loaded = load_scores(path)
    assert torch.equal(loaded.sample_ids, train.ids)
    assert torch.equal(loaded.score, score.double())
    assert loaded.stderr.isnan().all() and loaded.meta["direction"] == 1
    assert path.read_text().splitlines()[0] == "sample_id,score,stderr"


@pytest.mark.parametrize(
    ("level", "expected"),
    [("high", [18, 19]), ("low", [0, 1]), ("mid", [9, 10]), ("medium", [9, 10])],
)
def test_memorization_selectors(tmp_path, level, expected) -> None:
    train = _train()
    path, score = _scores(train, tmp_path / "s.csv")
    ids = select_forget(train, f"memorization:{level}:2:{path}")
    by_rank = torch.argsort(score)
    assert sorted(score[ids].tolist()) == sorted(score[by_rank[expected]].tolist())
    assert ids.tolist() == sorted(train.ids[by_rank[expected]].tolist())


def test_confidence_like_scores_are_turned_around(tmp_path) -> None:
    train = _train()
    path, score = _scores(train, tmp_path / "s.csv", direction=-1)
    ids = select_forget(train, f"memorization:high:3:{path}")
    assert sorted(score[ids].tolist()) == [0.0, 1.0, 2.0]  # least confident = most memorized


def test_mixed_takes_a_third_from_each_level(tmp_path) -> None:
    train = _train()
    path, score = _scores(train, tmp_path / "s.csv")
    got = sorted(score[select_forget(train, f"memorization:mixed:6:{path}")].tolist())
    assert got == [0.0, 1.0, 9.0, 10.0, 18.0, 19.0]


def test_a_level_inside_a_tie_is_a_fixed_draw_not_the_lowest_ids(tmp_path) -> None:
    train = _train()
    score = torch.zeros(20)
    score[[3, 11, 17]] = torch.tensor([5.0, 6.0, 7.0])  # 17 samples tie at 0, as FZ's zeros
    table = ScoreTable(
        train.ids,
        score,
        torch.full((20,), float("nan")),
        {"direction": 1, "train_fingerprint": train.fingerprint()},
    )
    path = save_scores(table, tmp_path / "ties.csv")
    draws = [
        sorted(select_forget(train, f"memorization:{level}:4:{path}", seed).tolist())
        for level in ("low", "mid")
        for seed in range(4)
    ]
    assert all(score[ids].eq(0).all() for ids in draws)  # still among the lowest scores
    assert all(ids == draws[0] for ids in draws[:4])  # one fixed set whatever the run's seed
    assert draws[0] != [0, 1, 2, 4] and draws[4] != [9, 10, 12, 13]  # not the id order
    high = select_forget(train, f"memorization:high:3:{path}", 5)
    assert sorted(high.tolist()) == [3, 11, 17]  # distinct scores keep their exact order


def test_score_file_for_other_data_is_refused(tmp_path) -> None:
    train = _train()
    path, _ = _scores(train, tmp_path / "s.csv")
    before = path.read_bytes()
    other = ArraySplit(train.x + 1, train.y, train.ids)
    with pytest.raises(ConflictError, match="computed for other data"):
        select_forget(other, f"memorization:high:2:{path}")
    assert path.read_bytes() == before
    with pytest.raises(UnlearnkitError, match="LEVEL one of"):
        select_forget(train, "memorization:high")
    with pytest.raises(UnlearnkitError, match="unknown memorization level 'top'"):
        select_forget(train, f"memorization:top:2:{path}")
    with pytest.raises(UnlearnkitError, match="cannot read score file"):
        select_forget(train, f"memorization:high:2:{tmp_path / 'missing.csv'}")


def _app() -> typer.Typer:
    from unlearnkit.cli.memorize import mount

    app = typer.Typer()
    app.command("noop")(lambda: None)
    mount(app)
    return app


def test_memorize_command_writes_proxy_scores(tmp_path) -> None:
    out = tmp_path / "m"
    result = CliRunner().invoke(
        _app(), ["memorize", "--method", "confidence", "--epochs", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = load_scores(out / "scores.csv")
    assert table.meta["method"] == "confidence" and table.meta["direction"] == -1
    assert len(table) > 900 and not table.score.isnan().any()


@pytest.mark.parametrize(
    "args", [["--k", "1"], ["--fraction", "1.2"], ["--method", "loss"], ["--executor", "dask"]]
)
def test_memorize_bad_input_fails_cleanly_and_writes_nothing(tmp_path, args) -> None:
    out = tmp_path / "m"
    result = CliRunner().invoke(_app(), ["memorize", *args, "--out", str(out)])
    assert result.exit_code == 2
    assert not out.exists()
