"""Cheap memorization proxies, recorded through the training loop's callbacks in one run.

Each proxy is a ``Callback`` that is bound to the training set before training starts, watches
the training events it needs, and returns one value per sample (in the order of the bound split)
from ``result``. Learning-event proxies average a statistic of the batch logits over every step
a sample was seen; curvature averages an input-perturbation estimate over epochs; holdout
retraining fine-tunes a copy on held-out data after training. ``direction`` says whether
memorized samples score high (+1) or low (-1).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry
from unlearnkit.runtime.device import current_runtime
from unlearnkit.training import Callback, TrainConfig, TrainState, predict_logits, train


class Proxy(Callback):
    """A memorization proxy; subclasses set ``name``, ``direction`` and ``summary``."""

    name: ClassVar[str] = ""
    direction: ClassVar[int] = 1
    summary: ClassVar[str] = ""

    def bind(self, data: ArraySplit, holdout: ArraySplit | None = None) -> None:
        """Prepare for a training run on ``data`` (called before ``on_train_begin``)."""
        self.data, self.holdout = data, holdout
        lookup = torch.full((int(data.ids.max()) + 1,), -1, dtype=torch.long)
        lookup[data.ids] = torch.arange(len(data))
        self.position = lookup

    def result(self, model: nn.Module, trainable: Sequence[str], cfg: TrainConfig) -> torch.Tensor:
        """One value per sample of the bound split, after training ended."""
        raise NotImplementedError


PROXIES: Registry[Proxy] = Registry("memorization proxy")


def register_proxy(cls: type[Proxy]) -> type[Proxy]:
    PROXIES.register(cls.name)(cls)
    return cls


class LearningEventProxy(Proxy):
    """Averages ``event(probabilities, labels)`` over every training step a sample took part in."""

    def bind(self, data: ArraySplit, holdout: ArraySplit | None = None) -> None:
        super().bind(data, holdout)
        self.total = torch.zeros(len(data), dtype=torch.float64)
        self.count = torch.zeros(len(data), dtype=torch.float64)

    def event(self, prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def on_batch_end(self, state: TrainState) -> None:
        if state.logits is None or state.batch is None:  # a custom loss hides the logits
            return
        _, y, ids = state.batch
        prob = F.softmax(state.logits.detach().cpu().double(), dim=1)  # tallies live on the CPU
        y = y.cpu()
        where = self.position[ids]
        self.total.index_add_(0, where, self.event(prob, y))
        self.count.index_add_(0, where, torch.ones(len(ids), dtype=torch.float64))

    def result(self, model: nn.Module, trainable: Sequence[str], cfg: TrainConfig) -> torch.Tensor:
        return self.total / self.count  # NaN for a sample never seen


@register_proxy
class Confidence(LearningEventProxy):
    name, direction = "confidence", -1
    summary = "softmax probability of the true label, averaged over training"

    def event(self, prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return prob.gather(1, y[:, None]).squeeze(1)


@register_proxy
class MaxConfidence(LearningEventProxy):
    name, direction = "max_confidence", -1
    summary = "largest softmax probability, averaged over training"

    def event(self, prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return prob.max(dim=1).values


@register_proxy
class NegativeEntropy(LearningEventProxy):
    name, direction = "neg_entropy", -1
    summary = "negative entropy of the prediction, averaged over training"

    def event(self, prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (prob * prob.clamp_min(1e-30).log()).sum(dim=1)


@register_proxy
class BinaryAccuracy(LearningEventProxy):
    name, direction = "binary_accuracy", -1
    summary = "1 if the prediction was right, averaged over training"

    def event(self, prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (prob.argmax(dim=1) == y).double()


@register_proxy
class Curvature(Proxy):
    """Loss curvature around each input (Garg et al.): E_v ||grad_x L(x + h v) - grad_x L(x)||^2
    / h^2 with Rademacher v, a Hessian-trace estimate, measured at each epoch end and averaged."""

    name, direction = "curvature", 1
    summary = "input-space loss curvature (Hessian trace estimate), averaged over epochs"

    def __init__(
        self, h: float = 0.01, draws: int = 2, seed: int = 0, batch_size: int = 512
    ) -> None:
        if h <= 0 or draws < 1:
            raise UnlearnkitError(f"curvature needs h > 0 and draws >= 1, got h={h}, draws={draws}")
        self.h, self.draws, self.seed, self.batch_size = h, draws, seed, batch_size

    def bind(self, data: ArraySplit, holdout: ArraySplit | None = None) -> None:
        super().bind(data, holdout)
        self.total = torch.zeros(len(data), dtype=torch.float64)
        self.epochs = 0
        self.generator = torch.Generator().manual_seed(self.seed)

    def _input_grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Input gradients, computed on the runtime's device, returned on the CPU."""
        runtime = current_runtime()
        x, y = runtime.batch(x, y)
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")  # sample i's loss depends on x_i only
        return runtime.to_cpu(torch.autograd.grad(loss, x)[0])

    def on_epoch_end(self, state: TrainState) -> None:
        model = state.model
        was_training = model.training
        model.eval()  # BatchNorm statistics fixed, so samples do not interact
        values = []
        for x, y in zip(
            self.data.samples.batches(self.batch_size),
            self.data.y.split(self.batch_size),
            strict=True,
        ):
            base = self._input_grad(model, x, y)
            acc = torch.zeros(len(x), dtype=torch.float64)
            for _ in range(self.draws):
                v = torch.randint(0, 2, x.shape, generator=self.generator).to(x.dtype) * 2 - 1
                diff = self._input_grad(model, x + self.h * v, y) - base
                acc += diff.flatten(1).pow(2).sum(1).double()
            values.append(acc / (self.draws * self.h**2))
        model.train(was_training)
        self.total += torch.cat(values)
        self.epochs += 1

    def result(self, model: nn.Module, trainable: Sequence[str], cfg: TrainConfig) -> torch.Tensor:
        return self.total / max(self.epochs, 1)


@register_proxy
class HoldoutRetraining(Proxy):
    """Fine-tune a copy of the trained model on held-out data; samples whose predictions move
    most (symmetric KL) were held up by memorization rather than by their neighbours."""

    name, direction = "holdout", 1
    summary = "symmetric KL of predictions before/after fine-tuning a copy on held-out data"

    def __init__(self, epochs: int = 3, lr_scale: float = 1.0) -> None:
        if epochs < 1 or lr_scale <= 0:
            raise UnlearnkitError(
                f"holdout needs epochs >= 1 and lr_scale > 0, got {epochs}, {lr_scale}"
            )
        self.epochs, self.lr_scale = epochs, lr_scale

    def result(self, model: nn.Module, trainable: Sequence[str], cfg: TrainConfig) -> torch.Tensor:
        if self.holdout is None or len(self.holdout) < 2:
            raise UnlearnkitError("the holdout proxy needs held-out data (at least 2 samples)")
        tuned = copy.deepcopy(model)
        recipe = cfg.model_copy(
            update={
                "epochs": self.epochs,
                "lr": cfg.lr * self.lr_scale,
                "schedule": "constant",
                "progress": False,
            }
        )
        train(tuned, self.holdout, recipe, list(trainable))
        p = F.log_softmax(predict_logits(model, self.data).double(), dim=1)
        q = F.log_softmax(predict_logits(tuned, self.data).double(), dim=1)
        return ((p.exp() - q.exp()) * (p - q)).sum(dim=1)  # KL(p||q) + KL(q||p)


class _Timed(Callback):
    """Forwards every hook to ``inner`` and adds up the seconds it spent there."""

    def __init__(self, inner: Callback) -> None:
        self.inner, self.seconds = inner, 0.0

    def _call(self, hook: str, state: TrainState) -> None:
        start = time.perf_counter()
        getattr(self.inner, hook)(state)
        self.seconds += time.perf_counter() - start

    def on_train_begin(self, state: TrainState) -> None:
        self._call("on_train_begin", state)

    def on_batch_end(self, state: TrainState) -> None:
        self._call("on_batch_end", state)

    def on_epoch_end(self, state: TrainState) -> None:
        self._call("on_epoch_end", state)


@dataclass
class ProxyRun:
    """Proxy values per sample (order of ``data``), each proxy's own seconds, the training's."""

    data: ArraySplit
    values: dict[str, torch.Tensor]
    seconds: dict[str, float]
    train_seconds: float
    model: nn.Module


def create_proxies(
    names: Sequence[str], options: dict[str, dict[str, Any]] | None = None
) -> list[Proxy]:
    options = options or {}
    if not names:
        raise UnlearnkitError(f"name at least one proxy ({', '.join(PROXIES.names())})")
    return [PROXIES.create(n, **options.get(n, {})) for n in names]


def run_with_proxies(
    model: nn.Module,
    data: ArraySplit,
    cfg: TrainConfig,
    trainable: Sequence[str],
    names: Sequence[str],
    holdout: ArraySplit | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> ProxyRun:
    """Train ``model`` on ``data`` once (in place) while recording every named proxy."""
    proxies = create_proxies(names, options)
    for proxy in proxies:
        proxy.bind(data, holdout)
    timed = [_Timed(p) for p in proxies]
    start = time.perf_counter()
    train(model, data, cfg, list(trainable), callbacks=timed)
    total = time.perf_counter() - start
    values, seconds = {}, {}
    for proxy, clock in zip(proxies, timed, strict=True):
        t0 = time.perf_counter()
        values[proxy.name] = proxy.result(model, trainable, cfg)
        seconds[proxy.name] = clock.seconds + time.perf_counter() - t0
    train_seconds = total - sum(c.seconds for c in timed)
    return ProxyRun(data, values, seconds, train_seconds, model)
