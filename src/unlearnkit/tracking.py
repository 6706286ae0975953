"""Optional MLflow logging of a finished run (the ``tracking`` extra).

One MLflow run per experiment: the config as parameters, every (method, seed) measurement as a
metric with the seed as its step, the per-method summary (ToW mean and CI), and the run
directory (results.json, report.md, figures) as artifacts. The tracking URI is MLflow's own
(``MLFLOW_TRACKING_URI``, else its local default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnkitError


def require_mlflow() -> Any:
    """Fail before any work when the extra is missing."""
    try:
        import mlflow  # deferred: optional extra (tracking)
    except ImportError:
        raise UnlearnkitError(
            "--mlflow needs the tracking extra: pip install 'unlearnkit[tracking]'"
        ) from None
    return mlflow


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts -> dotted keys (MLflow params and metrics are flat)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value
    return out


def run_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The numeric measurements of one (method, seed) row, keyed ``method.metric``."""
    flat = flatten("", {k: v for k, v in row.items() if k not in ("method", "seed")}, {})
    return {
        f"{row['method']}.{key}": float(value)
        for key, value in flat.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def log_run(results: dict[str, Any], run_dir: Path, experiment: str) -> str:
    """Log one experiment's results to MLflow; returns the MLflow run id."""
    mlflow = require_mlflow()
    mlflow.set_experiment(experiment)
    name = f"{results['dataset']}-{results['model']}-{results['forget']}"
    with mlflow.start_run(run_name=name) as run:
        params = flatten("", results.get("config", {}), {})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        for row in results["runs"]:
            mlflow.log_metrics(run_metrics(row), step=int(row["seed"]))
        summary = {}
        for method, stats in results.get("summary", {}).items():
            for key, value in flatten("", stats, {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    summary[f"summary.{method}.{key}"] = float(value)
        mlflow.log_metrics(summary)
        mlflow.log_artifacts(str(run_dir))
        return run.info.run_id
