"""A bounded load test against a real `unlearnkit serve`: paced deletions from two clients while
two clients predict, background retrains of the shards the deletions kill, one kill -9 halfway
and a restart. Every acknowledged deletion is applied exactly once, and no answer is a 5xx.
(`benchmarks/service.py --part load` runs the same at 2,000 deletions / 20,000 predictions.)"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from service_helpers import ADMIN, auth
from test_service_kill9 import free_port
from test_service_kill9 import launch as start_server

from unlearnkit.exact import S3TEnsemble
from unlearnkit.service.ledger import Ledger

DELETIONS, PREDICTIONS = 100, 1500


def launch(model_dir, token_file, port: int, log):
    """The server with background retraining on (the default) and one torch thread."""
    return start_server(
        model_dir, token_file, port, log, "--threads", "1", "--snapshot-every", "25"
    )


class Load:
    """Clients that outlive a restart: an unanswered deletion is sent again with its key."""

    def __init__(self, url: str, ids: list[int], x) -> None:
        self.url, self.todo, self.body = url, list(ids), {"inputs": x.tolist()}
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.acked: dict[int, str] = {}
        self.codes: list[int] = []
        self.predicted = 0
        self.threads = [threading.Thread(target=self.predict) for _ in range(2)]
        self.threads += [threading.Thread(target=self.delete) for _ in range(2)]

    def predict(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/v1/predict", json=self.body, headers=auth())
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                self.codes.append(r.status_code)
                self.predicted += r.status_code == 200

    def delete(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                with self.lock:
                    if not self.todo:
                        return
                    i = self.todo.pop()
                while not self.stop.is_set():
                    try:
                        r = client.post(
                            "/v1/deletions", json={"sample_ids": [i]}, headers=auth(ADMIN, f"l{i}")
                        )
                    except httpx.TransportError:
                        time.sleep(0.1)
                        continue
                    self.codes.append(r.status_code)
                    if r.status_code == 202:
                        self.acked[i] = r.json()["request_id"]
                        break
                    time.sleep(0.1)
                time.sleep(0.1)  # paced: about 20 deletions/s from the two clients

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


@pytest.mark.slow  # two server start-ups and ~30 s of load
def test_load_with_kill_9_and_retrains_loses_nothing(exact_dir, tmp_path, digits_small):
    bundle, _ = digits_small
    base = S3TEnsemble.load(exact_dir)
    # half of shards 1 and 2 (their slices keep data to retrain from); shard 0 keeps serving
    ids = base.partition.members(1)[: DELETIONS // 2] + base.partition.members(2)[: DELETIONS // 2]
    assert len(ids) == DELETIONS
    token_file = tmp_path / "tokens.json"
    token_file.write_text(
        json.dumps({"tokens": [{"name": "ops", "token": ADMIN, "scopes": ["admin"]}]})
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "server.log").open("wb") as log:
        proc = launch(exact_dir, token_file, port, log)
        try:
            with Load(url, ids, bundle.test.x[:4]) as load:
                deadline = time.monotonic() + 120
                while len(load.acked) < DELETIONS // 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                proc.kill()  # SIGKILL halfway
                proc.wait()
                proc = launch(exact_dir, token_file, port, log)
                deadline = time.monotonic() + 240

                def retrains() -> int:
                    got = httpx.get(f"{url}/v1/model", headers=auth(), timeout=30).json()
                    return got["retrains_done"]

                while time.monotonic() < deadline and not (
                    len(load.acked) == DELETIONS
                    and load.predicted >= PREDICTIONS
                    and retrains() >= 1  # predictions go on while a dead shard retrains
                ):
                    time.sleep(0.5)
            model = httpx.get(f"{url}/v1/model", headers=auth(), timeout=30).json()
        finally:
            proc.kill()
            proc.wait()
    assert len(load.acked) == DELETIONS and load.predicted >= PREDICTIONS
    assert not [c for c in load.codes if c >= 500]  # no 5xx, before or after the kill
    ledger = Ledger(exact_dir / "service" / "ledger.sqlite3", {})
    events = ledger.after(0)
    ledger.close()
    deletions = [e for e in events if e.kind == "deletion"]
    deleted = [i for e in deletions for i in e.payload["sample_ids"]]
    assert len(deleted) == len(set(deleted))  # no sample in two events
    assert set(deleted) == set(load.acked)  # acknowledged == applied, nothing else
    assert {e.status for e in deletions} == {"applied"}
    by_id = {e.payload["sample_ids"][0]: e.request_id for e in deletions}
    assert by_id == load.acked  # each client got the request id the ledger holds
    assert model["deleted_samples"] == DELETIONS
    assert any(e.kind == "retrain" and e.status == "applied" for e in events)  # retrains landed
