"""The one training loop every part of unlearnkit uses (training, retraining, unlearning).

SGD with momentum and weight decay over the *trainable* parameters only (frozen ones never
reach the optimizer, so momentum and weight decay cannot move them), seeded shuffling so the
same seed gives the same weights on CPU, a progress bar, and callbacks that observe every batch
(the memorization proxies hook in here).

Device and precision come from the current runtime (``unlearnkit.runtime.current_runtime``):
the model is placed on its device for the loop, inputs and labels move there per batch (sample
ids stay on the CPU for bookkeeping), the forward pass and loss run under its autocast, and fp16
scales the loss. On the CPU in fp32 all of that is a no-op, so CPU results are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.loader import iterate_batches, split_inputs
from unlearnkit.data.transforms import AUGMENTATIONS, batch_seed, make_augmentation
from unlearnkit.runtime.device import current_runtime
from unlearnkit.runtime.progress import report

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


class TrainConfig(BaseModel):
    """A training recipe; every field validated so a bad value fails before any work is done."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(30, ge=0, le=10_000)
    lr: float = Field(0.05, gt=0, le=10)
    batch_size: int = Field(64, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["constant", "cosine"] = "cosine"
    seed: int = 0
    augment: str = Field(
        "none",
        description="training augmentation preset (unlearnkit.data.transforms): none | "
        "pad_crop_flip (small images) | resized_crop_flip (large); seeded, training passes only",
    )
    progress: bool = Field(
        False,
        description="ignored, kept so older saved configs load: progress goes to the "
        "receiver of unlearnkit.runtime.reporting",
    )

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: str) -> str:
        AUGMENTATIONS.get(v)  # an unknown name fails here, listing the presets
        return v


@dataclass
class TrainState:
    """What a callback sees: position in training and the current batch's outputs."""

    model: nn.Module
    epoch: int
    step: int
    batch: Batch | None = None
    logits: torch.Tensor | None = None
    loss: float | None = None


class Callback:
    """Override the hooks you need; the loop calls them in order."""

    def on_train_begin(self, state: TrainState) -> None: ...
    def on_batch_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, trainable: Sequence[str], cfg: TrainConfig) -> torch.optim.SGD:
    """SGD over exactly the named parameters (nothing else can move)."""
    params = dict(model.named_parameters())
    chosen = [params[n] for n in trainable]
    return torch.optim.SGD(chosen, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":

        def factor(step: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    else:

        def factor(step: int) -> float:
            return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded shuffle cut into batches; a trailing batch of one joins its neighbour (BatchNorm
    cannot train on a single sample)."""
    batches = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()  # pop first: batches[-2] must name the neighbour, not the one before
        batches[-1] = torch.cat([batches[-1], last])
    return batches


def cross_entropy_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y, _ = batch
    return F.cross_entropy(model(x), y)


def train(
    model: nn.Module,
    data: ArraySplit,
    cfg: TrainConfig,
    trainable: Sequence[str] | None = None,
    loss_fn: LossFn | None = None,
    callbacks: Sequence[Callback] = (),
    eval_mode: bool = False,
) -> nn.Module:
    """Train ``model`` in place on ``data`` and return it.

    ``trainable`` names the parameters that may change (default: those with requires_grad).
    ``loss_fn(model, batch)`` replaces cross-entropy (unlearning methods use this).
    ``eval_mode`` keeps the model in eval mode while its trainable parameters train: BatchNorm
    statistics stay frozen and dropout off (adapters on a frozen backbone, e.g. S3T blocks).
    """
    if trainable is None:
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    runtime = current_runtime()
    with runtime.placed(model):
        _train_loop(model, data, cfg, trainable, loss_fn, callbacks, eval_mode)
    return model


def _train_loop(
    model: nn.Module,
    data: ArraySplit,
    cfg: TrainConfig,
    trainable: Sequence[str],
    loss_fn: LossFn | None,
    callbacks: Sequence[Callback],
    eval_mode: bool,
) -> None:
    runtime = current_runtime()
    wanted = set(trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = make_optimizer(model, trainable, cfg)
    scaler = runtime.grad_scaler()
    steps_per_epoch = len(batch_indices(len(data), cfg.batch_size, torch.Generator()))
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
    state = TrainState(model=model, epoch=0, step=0)
    for cb in callbacks:
        cb.on_train_begin(state)
    model.train(not eval_mode)
    total_steps = cfg.epochs * steps_per_epoch
    for epoch, batch in _epochs(data, cfg, generator, steps_per_epoch):
        if epoch is not None:  # an epoch ended
            state.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_end(state)
            continue
        state.epoch = state.step // max(steps_per_epoch, 1)
        x, y = runtime.batch(batch[0], batch[1])
        batch = (x, y, batch[2])
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            if loss_fn is None:
                logits = model(batch[0])
                loss = F.cross_entropy(logits, batch[1])
            else:
                logits, loss = None, loss_fn(model, batch)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:  # fp16: scaled backward; a step with inf/NaN gradients is skipped
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        state.step += 1
        state.batch, state.logits, state.loss = batch, logits, float(loss.detach())
        for cb in callbacks:
            cb.on_batch_end(state)
        report("train", state.step, total_steps)
    model.eval()


def _epochs(
    data: ArraySplit, cfg: TrainConfig, generator: torch.Generator, steps_per_epoch: int
) -> Iterator[tuple[int | None, Batch]]:
    """Every training batch of the run, then ``(epoch, _)`` after each epoch's last batch.

    The whole plan (each epoch's seeded shuffle, each batch's augmentation seed) is drawn here
    first, in the order the old loop drew it, and one DataLoader (``--workers``) decodes it:
    the batches do not depend on the number of workers."""
    plan, seeds = [], []
    for epoch in range(cfg.epochs):
        for step, index in enumerate(batch_indices(len(data), cfg.batch_size, generator)):
            plan.append(index)
            seeds.append(batch_seed(cfg.seed, epoch, step))
    augment = make_augmentation(cfg.augment, int(data.samples.sample_shape[-1]))
    runtime = current_runtime()
    batches = iterate_batches(
        data,
        plan,
        seeds=seeds if augment is not None else None,
        augment=augment,
        workers=runtime.workers,
        pin_memory=runtime.is_cuda,
    )
    empty = (torch.empty(0), torch.empty(0), torch.empty(0))
    for i, batch in enumerate(batches, start=1):
        yield None, batch
        if i % steps_per_epoch == 0:
            yield i // steps_per_epoch - 1, empty
    if steps_per_epoch == 0:  # an empty split: the epochs still end, as before
        for epoch in range(cfg.epochs):
            yield epoch, empty


@contextmanager
def channels_last(model: nn.Module) -> Iterator[nn.Module]:
    """Convolution weights in channels-last layout for the duration, then back.

    oneDNN's CPU convolutions run faster in that layout on the 28x28 smallcnn (measured by
    benchmarks/layout.py on 2 threads: predictions x1.9, BN + head training steps x1.7); the
    weights go back to the standard layout afterwards because safetensors and ``view`` need
    contiguous tensors. It changes the parameters' storage in place, so it is for
    single-threaded harnesses (the experiment loop, the recipe's training), never for a model
    that other threads are running. A no-op for models without 4-D parameters and inside an
    enclosing use."""
    convs = [p for p in model.parameters() if p.dim() == 4]
    if not convs or all(p.is_contiguous(memory_format=torch.channels_last) for p in convs):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


Inputs = torch.Tensor | ArraySplit


def input_batches(x: Inputs, batch_size: int) -> Iterator[torch.Tensor]:
    """Model inputs in order, ``batch_size`` rows at a time (the last batch may be shorter).

    A split's batches are loaded through the shared DataLoader path (the current runtime's
    ``--workers``, pinned memory on CUDA) and never augmented, so no consumer holds the whole
    split's inputs; a tensor is sliced. Either way batch k is rows [k b, (k + 1) b) of what
    ``split.x`` would hold, bit for bit: every bulk consumer (predictions, Jacobians, the
    ensembles' logits) reads its inputs here."""
    if not isinstance(x, ArraySplit):
        yield from x.split(batch_size)
        return
    runtime = current_runtime()
    yield from split_inputs(x, batch_size, workers=runtime.workers, pin_memory=runtime.is_cuda)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 256) -> torch.Tensor:
    """Logits in eval mode (BatchNorm running statistics), batched to bound memory; computed
    on the current runtime's device and precision, returned on the CPU in float32.

    ``x``: model inputs, or a split, whose batches are loaded (``--workers``) without ever
    holding all of its inputs; never augmented."""
    runtime = current_runtime()
    was_training = model.training
    model.eval()
    chunks: Iterable[torch.Tensor] = input_batches(x, batch_size)
    with runtime.placed(model), runtime.autocast():
        out = [runtime.to_cpu(model(runtime.tensor(chunk))) for chunk in chunks]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, split: ArraySplit) -> float:
    """Top-1 accuracy in percent (NaN for an empty split)."""
    if len(split) == 0:
        return float("nan")
    return 100.0 * float((predict_logits(model, split).argmax(1) == split.y).float().mean())
