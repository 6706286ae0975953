"""Metrics: accuracy, MIA efficacy, ToW (+CI), relearn time, cost."""

from unlearnkit.metrics.cost import Cost, measure_cost, params_touched, peak_rss_mb
from unlearnkit.metrics.intervals import (
    INTERVAL_METHOD,
    MIN_SEEDS_FOR_CLAIM,
    mean_ci95,
    paired_verdict,
)
from unlearnkit.metrics.mia import mia_efficacy
from unlearnkit.metrics.relearn import RELEARN_BN, censored_summary, censored_text, relearn_epochs
from unlearnkit.metrics.tow import tow, tow_mia
from unlearnkit.training import accuracy

__all__ = [
    "INTERVAL_METHOD",
    "MIN_SEEDS_FOR_CLAIM",
    "RELEARN_BN",
    "Cost",
    "accuracy",
    "censored_summary",
    "censored_text",
    "mean_ci95",
    "measure_cost",
    "mia_efficacy",
    "paired_verdict",
    "params_touched",
    "peak_rss_mb",
    "relearn_epochs",
    "tow",
    "tow_mia",
]
