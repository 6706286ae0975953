"""Tug-of-war (ToW) against the retrain reference (its intervals over seeds: ``intervals``)."""

from __future__ import annotations


def tow(acc: dict[str, float], reference: dict[str, float]) -> float:
    """(1 - |d forget|/100)(1 - |d retain|/100)(1 - |d test|/100); accuracies in percent."""
    value = 1.0
    for key in ("forget", "retain", "test"):
        value *= 1 - abs(acc[key] - reference[key]) / 100
    return value


def tow_mia(
    acc: dict[str, float], mia: float, reference: dict[str, float], reference_mia: float
) -> float:
    """ToW with the forget-accuracy term replaced by the MIA-efficacy difference (percent)."""
    return (
        (1 - abs(mia - reference_mia) / 100)
        * (1 - abs(acc["retain"] - reference["retain"]) / 100)
        * (1 - abs(acc["test"] - reference["test"]) / 100)
    )
