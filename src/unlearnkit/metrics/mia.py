"""MIA efficacy (SalUn style): an RBF SVC learns member (retain) vs non-member (test) from the
true-label confidence, then judges the forget set; efficacy = % of D_f called non-member."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.svm import SVC
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.training import predict_logits


def true_label_confidence(model: nn.Module, split: ArraySplit) -> np.ndarray:
    probs = F.softmax(predict_logits(model, split), dim=1)
    return probs.gather(1, split.y[:, None]).squeeze(1).numpy()


def _rows(split: ArraySplit, positions: np.ndarray) -> ArraySplit:
    return split.subset(torch.from_numpy(positions))


def mia_efficacy(
    model: nn.Module,
    retain: ArraySplit,
    forget: ArraySplit,
    test: ArraySplit,
    seed: int = 0,
    max_per_class: int = 2000,
) -> float:
    """Percent of forget samples the attack predicts as non-members (higher = more forgotten).

    Members and non-members are balanced (same count drawn from each) so the attack is not
    biased toward the larger set.
    """
    rng = np.random.default_rng(seed)
    n = min(len(retain), len(test), max_per_class)
    # draw first, then run the model on the drawn samples only (not on all of a 40k retain set)
    members = true_label_confidence(model, _rows(retain, rng.choice(len(retain), n, replace=False)))
    non_members = true_label_confidence(model, _rows(test, rng.choice(len(test), n, replace=False)))
    features = np.concatenate([members, non_members])[:, None]
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    attack = SVC(C=3, kernel="rbf", gamma="auto").fit(features, labels)
    verdict = attack.predict(true_label_confidence(model, forget)[:, None])
    return float(100.0 * (verdict == 0).mean())


__all__ = ["mia_efficacy", "true_label_confidence"]
