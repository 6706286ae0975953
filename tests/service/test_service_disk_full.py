"""A ledger that cannot be written (disk full, read-only directory): a deletion is refused with a
503 that says why, is not acknowledged and leaves nothing behind; predictions go on; once there
is room the same request (same Idempotency-Key) goes through. The tests run as root, for whom a
read-only directory is still writable, so the write error is injected under the ledger's
SQLite connection, with the messages SQLite gives."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import torch
from service_helpers import DELETE, PREDICT, auth, parse_metrics, start_service, wait_for

from unlearnkit.exact import S3TEnsemble
from unlearnkit.service.auth import Principal

X = torch.zeros(2, 1, 8, 8)
FULL = "database or disk is full"
READONLY = "attempt to write a readonly database"


class Unwritable:
    """Stands in for the ledger's sqlite3 connection: reads pass, writes fail with ``message``
    while ``on`` is set."""

    def __init__(self, db: sqlite3.Connection, message: str) -> None:
        self._db, self.message, self.on = db, message, threading.Event()
        self.on.set()

    def _refuse(self, sql: str) -> None:
        verb = sql.lstrip().split(None, 1)[0].upper()
        if self.on.is_set() and verb in ("BEGIN", "INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError(self.message)

    def execute(self, sql: str, *args):
        self._refuse(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self._refuse(sql)
        return self._db.executemany(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._db, name)


def victim(model_dir) -> int:
    return S3TEnsemble.load(model_dir).partition.members(0, 1)[0]


@pytest.mark.parametrize("message", [FULL, READONLY], ids=["disk-full", "read-only"])
def test_unwritable_ledger_refuses_deletions_with_a_503_and_predictions_go_on(
    serve, exact_dir, message
):
    sample = victim(exact_dir)
    with serve(exact_dir, background_retrain=False) as client:
        service = client.service
        before = client.post("/v1/predict", json={"inputs": X.tolist()}, headers=auth(PREDICT))
        real = service.ledger._db
        broken = Unwritable(real, message)
        service.ledger._db = broken
        try:
            r = client.post(
                "/v1/deletions", json={"sample_ids": [sample]}, headers=auth(DELETE, "t")
            )
            during = client.post("/v1/predict", json={"inputs": X.tolist()}, headers=auth(PREDICT))
            health = client.get("/healthz")
            looked_up = client.get("/v1/deletions/none", headers=auth(DELETE))
        finally:
            service.ledger._db = real
        rows = real.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        version, deleted = service.model.version, service.model.deleted_ids()
        again = client.post(
            "/v1/deletions", json={"sample_ids": [sample]}, headers=auth(DELETE, "t")
        )
        values, _ = parse_metrics(client.get("/metrics", headers=auth()).text)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    error = r.json()["error"]
    assert error["type"] == "unavailable"
    assert "disk is full or the ledger is read-only" in error["message"]
    assert message in error["message"] and "nothing was recorded" in error["message"]
    assert rows == 0 and version == 0 and deleted == set()  # not recorded, not applied
    assert during.status_code == 200 and during.json() == before.json()
    assert health.status_code == 200  # the service itself is fine; it cannot write now
    assert looked_up.status_code == 404  # reads go on
    assert again.status_code == 202 and again.json()["status"] == "applied"
    assert values["unlearnkit_ledger_write_errors_total", ()] == 1


def test_disk_full_while_recording_results_is_retried_not_fatal(exact_dir):
    """The disk fills between the durable accept and the result: the applier keeps the model
    lock free, retries, and records the result once there is room."""
    sample = victim(exact_dir)
    service = start_service(exact_dir, background_retrain=False, apply_timeout_s=0.5)
    try:
        real = service.ledger._db
        broken = Unwritable(real, FULL)
        broken.on.clear()
        calls = []
        append = service.ledger.append

        def accept_then_fill(*args, **kwargs):  # the accept succeeds, then the disk is full
            out = append(*args, **kwargs)
            broken.on.set()
            calls.append(1)
            return out

        service.ledger._db = broken
        service.ledger.append = accept_then_fill
        who = Principal(name="privacy", scopes=frozenset({"delete"}))
        event, _ = service.submit_deletion(who, [sample], "k")
        assert event.status == "accepted"  # durable, not yet recorded as applied
        probs, _ = service.predict(X)  # predictions are not blocked by the retrying applier
        assert service.failure is None
        broken.on.clear()  # room again
        wait_for(lambda: service.ledger.get(event.request_id).status == "applied", timeout=20)
        service.ledger._db = real
    finally:
        service.close()
    assert calls == [1] and probs.shape == (2, 10)
