"""Re-score a finished audit's U-LiRA intervals from its own arrays, without training.

Every audit saves each method's phi per (pair, target) in ``llr.npz``; the (K pairs x targets)
phi arrays come back from them exactly, and so does every interval the audit would make. So an
audit run before an interval existed (the committed ones used the pair bootstrap, before issue
27) can be read under every registered interval. The run's own interval is recomputed first and
must equal what its results.json says, so the arrays are known to be the run's.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.audit.config import AuditConfig, audit_config
from unlearnkit.audit.run import control_check
from unlearnkit.audit.ulira import (
    interval_fields,
    phi_from_arrays,
    ulira_intervals,
    ulira_statistics,
    ulira_values,
)
from unlearnkit.errors import UnlearnkitError
from unlearnkit.metrics.audit_intervals import PAIR_INTERVALS

# results.json of runs from before AuditConfig.interval existed carry no "interval": they used
# the pair bootstrap, the only interval then
INTERVAL_BEFORE_ISSUE_27 = "pair_bootstrap"
TOLERANCE = 1e-9


def saved_audit_config(results: dict[str, Any]) -> AuditConfig:
    """The settings a finished audit ran with (its own interval included)."""
    values = dict(results["audit"])
    values.setdefault("interval", INTERVAL_BEFORE_ISSUE_27)
    return audit_config(**values)


def rescore_run(run_dir: str | Path, intervals: list[str] | None = None) -> dict[str, Any]:
    """Per method and per interval (default: every registered one): each statistic's interval,
    the permutation null's range and p-value, the verdict, and the CPU seconds it took; per
    interval, the control check. Raises ``UnlearnkitError`` if the run's own interval does not
    come back from its arrays."""
    run_dir = Path(run_dir)
    for name in ("results.json", "llr.npz"):
        if not (run_dir / name).is_file():
            raise UnlearnkitError(f"rescore: {run_dir} has no {name} (not an audit run directory)")
    results = json.loads((run_dir / "results.json").read_text())
    audit = saved_audit_config(results)
    names = intervals or PAIR_INTERVALS.names()
    for name in names:
        PAIR_INTERVALS.get(name)  # an unknown name fails before any work
    methods: dict[str, Any] = {}
    with np.load(run_dir / "llr.npz") as saved:
        arrays = {key: saved[key] for key in saved.files}
    for method, summary in results["summary"].items():
        phi_in, phi_out = phi_from_arrays(arrays, method, audit.k)
        values = ulira_values(phi_in, phi_out, audit)
        _check_reproduced(method, summary, values, phi_in, phi_out, audit)
        scored: dict[str, Any] = {}
        for name in names:
            started = time.process_time()
            fields = interval_fields(ulira_intervals(phi_in, phi_out, audit, name))
            scored[name] = {**fields, "cpu_seconds": time.process_time() - started}
        methods[method] = {**values, "intervals": scored}
    return {
        "run": str(run_dir),
        "forget": results.get("forget"),
        "forget_is_fixed": results["protocol"]["forget_is_fixed"],
        "pairs": audit.k,
        "targets": results["protocol"]["targets"],
        "resamples": audit.n_boot,
        "seed": audit.seed,
        "run_interval": audit.interval,
        "reproduces_run_interval": True,
        "intervals": names,
        "methods": methods,
        "control": {name: _control(results, methods, name) for name in names},
        "cpu_seconds_note": "process time of this re-scoring, on a shared 2-core machine",
    }


def _check_reproduced(
    method: str,
    summary: dict[str, Any],
    values: dict[str, float],
    phi_in: np.ndarray,
    phi_out: np.ndarray,
    audit: AuditConfig,
) -> None:
    """The statistics and the run's own intervals must come back from the arrays."""
    own = interval_fields(ulira_intervals(phi_in, phi_out, audit))
    for label in ulira_statistics():
        pairs = [(label, values[label], summary[label])]
        theirs = summary.get(f"{label}_ci95")
        ours = own[f"{label}_ci95"]
        if (theirs is None) != (ours is None):
            raise UnlearnkitError(f"rescore: {method} {label}_ci95 {ours} != the run's {theirs}")
        if theirs is not None:
            pairs += [(f"{label}_ci95", a, b) for a, b in zip(ours, theirs, strict=True)]
        for what, a, b in pairs:
            if not math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE):
                raise UnlearnkitError(
                    f"rescore: {method} {what} {a!r} from llr.npz != the run's {b!r} "
                    f"({audit.interval}): the arrays are not this run's"
                )


def _control(results: dict[str, Any], methods: dict[str, Any], name: str) -> dict[str, Any]:
    """The control check as the audit would have made it with interval ``name``."""
    summary = {
        method: {**results["summary"][method], "auc": m["auc"], **m["intervals"][name]}
        for method, m in methods.items()
    }
    return control_check(summary)


__all__ = ["INTERVAL_BEFORE_ISSUE_27", "rescore_run", "saved_audit_config"]
