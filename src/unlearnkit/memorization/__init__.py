"""Memorization at scale: Feldman-Zhang scores, cheap proxies, and forget-set selection by score.

RUM, the unlearning method built on these scores, is ``unlearnkit.methods.rum``.
"""

from unlearnkit.data.noisy import add_label_noise
from unlearnkit.data.scores import ScoreTable, load_scores, save_scores
from unlearnkit.memorization.feldman_zhang import FZConfig, estimate_memorization, fz_config
from unlearnkit.memorization.pipeline import feldman_zhang_scores, proxy_scores
from unlearnkit.memorization.proxies import PROXIES, Proxy, register_proxy, run_with_proxies

__all__ = [
    "PROXIES",
    "FZConfig",
    "Proxy",
    "ScoreTable",
    "add_label_noise",
    "estimate_memorization",
    "feldman_zhang_scores",
    "fz_config",
    "load_scores",
    "proxy_scores",
    "register_proxy",
    "run_with_proxies",
    "save_scores",
]
