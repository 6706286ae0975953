"""What the service reports about itself: ``GET /v1/model`` and the model gauges of /metrics."""

from __future__ import annotations

from typing import Any

from unlearnkit.service.ledger import Ledger
from unlearnkit.service.metrics import MetricSet
from unlearnkit.service.model_lock import ModelLock
from unlearnkit.service.served import ServedModel


def update_gauges(metrics: MetricSet, model: ServedModel) -> None:
    metrics.set("unlearnkit_model_version", model.version)
    live = getattr(model, "live_shard_count", None)
    if live is not None:
        metrics.set("unlearnkit_live_shards", live())


def model_status(
    mode: str,
    model: ServedModel,
    lock: ModelLock,
    ledger: Ledger,
    positions: dict[str, int],
    retrain_in_progress: int | None,
) -> dict[str, Any]:
    """The model's own status (read under the lock; its slow ``_deferred`` part, on copies,
    after the lock is released), what is retraining, and the ledger ``positions``
    (``applied_seq``, ``snapshot_seq``)."""
    with lock.reading():
        status = model.status()
        version = model.version
    deferred = status.pop("_deferred", None)
    if deferred is not None:
        for key, value in deferred().items():
            status[key] = {**status.get(key, {}), **value}
    pending = status.get("retrains_pending") or []
    return {
        "mode": mode,
        "version": version,
        **status,
        "retrain_in_progress": retrain_in_progress,
        "retrains_pending": pending,
        "preprocessing": model.preprocessing.to_json(),  # what /v1/predict applies
        "ledger": {"last_seq": ledger.last_seq(), **positions, "events": ledger.counts()},
    }
