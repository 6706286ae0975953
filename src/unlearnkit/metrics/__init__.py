"""Metrics: accuracy, MIA efficacy, ToW (+CI), relearn time, cost."""

from unlearnkit.metrics.cost import Cost, measure_cost, params_touched, peak_rss_mb
from unlearnkit.metrics.mia import mia_efficacy
from unlearnkit.metrics.relearn import relearn_epochs
from unlearnkit.metrics.tow import mean_ci95, tow, tow_mia
from unlearnkit.training import accuracy

__all__ = [
    "Cost",
    "accuracy",
    "mean_ci95",
    "measure_cost",
    "mia_efficacy",
    "params_touched",
    "peak_rss_mb",
    "relearn_epochs",
    "tow",
    "tow_mia",
]
