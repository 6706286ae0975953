"""Calibration: expected calibration error, and one softmax temperature fitted by likelihood.

ECE (Guo, Pleiss, Sun, Weinberger, ICML 2017): predictions binned by their top-class
confidence into equal-width bins on [0, 1]; ECE = sum over bins of (bin size / n) x
|accuracy in the bin - mean confidence in the bin|, in [0, 1]. A model whose softmax is nearly
flat (the one-hot linearised model: top confidence ~0.2 at 99% accuracy) scores close to its
accuracy minus 0.2; a calibrated one scores near 0.

``fit_temperature``: the T > 0 that minimises the mean negative log-likelihood of
softmax(logits / T) on the given labels (a one-dimensional convex problem in 1 / T, solved
in float64 on log T).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.training import predict_logits

ECE_BINS = 15  # Guo et al.'s choice


def ece_from_logits(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error of softmax(logits) against ``labels`` (module doc)."""
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits (n, C) and labels (n,) expected, got {tuple(logits.shape)}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    probs = torch.softmax(logits.double(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels.to(predicted.device)).double()
    # bin k holds confidences in (k / bins, (k + 1) / bins]; a confidence of exactly 0 cannot
    # occur (the top class of C has probability >= 1 / C)
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    total = 0.0
    for k in range(bins):
        inside = which == k
        if bool(inside.any()):
            gap = correct[inside].mean() - confidence[inside].mean()
            total += float(inside.double().mean()) * abs(float(gap))
    return total


def expected_calibration_error(model: nn.Module, data: ArraySplit, bins: int = ECE_BINS) -> float:
    """ECE of ``model`` on ``data`` (eval mode, the model left as it was)."""
    return ece_from_logits(predict_logits(model, data), data.y, bins)


def nll_at_temperature(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels.to(logits.device)))


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, low: float = 1e-3, high: float = 1e3
) -> float:
    """argmin_T NLL(softmax(logits / T), labels) over T in [low, high] (module doc)."""
    if logits.shape[0] == 0:
        raise ValueError("fit_temperature needs at least one sample")
    z, y = logits.detach().double().cpu(), labels.detach().cpu()

    def objective(log_t: float) -> float:
        return nll_at_temperature(z, y, math.exp(log_t))

    found = minimize_scalar(
        objective, bounds=(math.log(low), math.log(high)), method="bounded", options={"xatol": 1e-6}
    )
    return float(math.exp(found.x))
