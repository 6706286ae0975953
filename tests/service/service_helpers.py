"""Helpers shared by the service tests (imported as a plain module; see conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

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
