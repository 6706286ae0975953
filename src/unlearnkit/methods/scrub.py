"""SCRUB (Kurmanji et al.): a student moves away from the original (teacher) on D_f and stays
close to it, and correct, on D_r; max-steps and min-steps alternate."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import (
    OptimParams,
    UnlearningContext,
    UnlearningMethod,
    register_method,
)
from unlearnkit.runtime.device import current_runtime
from unlearnkit.training import Batch, train


class ScrubParams(OptimParams):
    """Defaults measured on digits + smallcnn/bn (class-3 forget, seed 0): lr 0.005, 2 max-steps
    and temperature 4 left the class at 99.7% (ToW 0.003); lr 0.05 with a max-step every epoch
    at temperature 1 reaches 0% like retraining (ToW 0.994) and keeps random-10% at ToW 0.997.
    The max-step starts with a zero KL gradient (student == teacher), so it needs every epoch."""

    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.05, gt=0, le=10)
    max_steps: int = Field(5, ge=0, description="epochs (from the start) that include a max-step")
    alpha: float = Field(0.5, ge=0, description="weight of the KL term on the retain set")
    gamma: float = Field(1.0, ge=0, description="weight of the CE term on the retain set")
    temperature: float = Field(1.0, gt=0)


def kl_to_teacher(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, 1),
            F.softmax(teacher_logits / temperature, 1),
            reduction="batchmean",
        )
        * temperature**2
    )


@register_method
class Scrub(UnlearningMethod):
    name = "scrub"
    Params = ScrubParams
    summary = "teacher-student: push away from the original on D_f, match it on D_r"

    def unlearn(self, ctx: UnlearningContext) -> nn.Module:
        p = self.params
        teacher = current_runtime().module(copy.deepcopy(ctx.model).eval())  # beside the student
        for param in teacher.parameters():
            param.requires_grad_(False)

        def teacher_logits(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return teacher(x)

        def max_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            return -kl_to_teacher(model(batch[0]), teacher_logits(batch[0]), p.temperature)

        def min_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            logits = model(batch[0])
            return p.gamma * F.cross_entropy(logits, batch[1]) + p.alpha * kl_to_teacher(
                logits, teacher_logits(batch[0]), p.temperature
            )

        single = p.model_copy(update={"epochs": 1})
        frozen = ctx.bn_mode == "frozen"
        for epoch in range(p.epochs):
            cfg = single.train_config(ctx.seed + epoch)
            if epoch < p.max_steps:
                train(ctx.model, ctx.forget, cfg, ctx.trainable, max_loss, eval_mode=frozen)
            train(ctx.model, ctx.retain, cfg, ctx.trainable, min_loss, eval_mode=frozen)
        return ctx.model
