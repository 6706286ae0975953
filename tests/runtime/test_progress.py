"""One progress mechanism: library loops report, a receiver set with ``reporting`` shows it."""

from __future__ import annotations

import torch
from torch import nn
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.data.base import make_split
from unlearnkit.runtime.progress import report, reporting
from unlearnkit.training import TrainConfig, train


def test_training_reports_every_step_to_the_receiver_of_its_block() -> None:
    data = make_split(torch.randn(40, 3), torch.arange(40) % 2)
    seen: list[tuple[str, int, int]] = []
    with reporting(lambda what, done, total: seen.append((what, done, total))):
        train(nn.Linear(3, 2), data, TrainConfig(epochs=2, batch_size=10))
    assert seen == [("train", step, 8) for step in range(1, 9)]
    report("train", 1, 1)  # outside the block: nobody listens, nothing breaks
    assert len(seen) == 8


def test_blocks_nest_and_restore_the_outer_receiver() -> None:
    outer: list[str] = []
    inner: list[str] = []
    with reporting(lambda what, *_: outer.append(what)):
        with reporting(lambda what, *_: inner.append(what)):
            report("a", 1, 1)
        report("b", 1, 1)
    assert inner == ["a"] and outer == ["b"]


def test_cli_train_is_not_silent_without_a_terminal(tmp_path) -> None:
    res = CliRunner().invoke(
        app,
        ["train", "--out", str(tmp_path / "m"), "--epochs", "2", "--no-pretrain", "--threads", "1"],
    )
    assert res.exit_code == 0, res.output
    lines = [line.strip() for line in res.output.splitlines()]
    shown = [line for line in lines if line.startswith("train: ")]
    assert shown and shown[0].split(": ")[1].split("/")[0].isdigit(), res.output
