"""The Python API takes any nn.Module with its head named: the experiment starts from a copy,
its head is re-sized and re-initialised, and the PEFT selection follows the named head."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.config import ExperimentConfig
from unlearnkit.experiment import run_experiment
from unlearnkit.models import name_head
from unlearnkit.recipe import load_bundle, train_original
from unlearnkit.training import TrainConfig


class UserNet(nn.Module):
    """A user's grey-scale network with a 1,000-way head under a name no convention knows."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.to_logits = nn.Linear(8 * 8 * 8, 1000)  # digits are 8x8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_logits(self.trunk(x))


def config(peft: str = "bn", epochs: int = 1) -> ExperimentConfig:
    return ExperimentConfig(
        pretrain=False, peft=peft, train=TrainConfig(epochs=epochs), methods=["finetune"]
    )


def test_train_original_starts_from_a_copy_of_the_users_module():
    user = name_head(UserNet(), "to_logits")
    before = {k: v.clone() for k, v in user.state_dict().items()}
    cfg = config()
    trained = train_original(cfg, load_bundle(cfg), seed=0, model=user)
    assert trained.model.to_logits.out_features == 10
    assert trained.trainable == [
        "trunk.1.weight",
        "trunk.1.bias",
        "to_logits.weight",
        "to_logits.bias",
    ]
    assert all(torch.equal(before[k], v) for k, v in user.state_dict().items())  # untouched
    assert torch.equal(trained.initial_state["trunk.0.weight"], before["trunk.0.weight"])


def test_run_experiment_on_the_users_module():
    results = run_experiment(config("full", 5), model=name_head(UserNet(), "to_logits"))
    assert results["model"] == "UserNet"
    assert results["head_params"] == 2 and results["total_params"] == 80 + 16 + 512 * 10 + 10
    assert [r["method"] for r in results["runs"]] == ["original", "retrain", "finetune"]
    assert results["summary"]["original"]["acc_test_mean"] > 50  # it trained (chance: 10)
