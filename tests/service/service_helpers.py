"""Helpers shared by the service tests (imported as a plain module; see conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unlearnkit.service import DeletionService, ServiceConfig

ADMIN, PREDICT, DELETE = "admin-token-000000001", "predict-token-0000001", "delete-token-00000001"


def auth(token: str = ADMIN, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def start_service(model_dir: Path, **overrides: Any) -> DeletionService:
    """A started service; background retraining in-process (no child process) by default."""
    settings: dict[str, Any] = {"retrain_in_subprocess": False, "retrain_poll_s": 0.05}
    settings.update(overrides)
    service = DeletionService(ServiceConfig(model_dir=model_dir, **settings))
    service.start()
    return service
