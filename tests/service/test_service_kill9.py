"""kill -9 a real `unlearnkit serve` process in the middle of a stream of deletions, restart it:
every acknowledged deletion is applied exactly once and the served model is the one the ledger
implies."""

from __future__ import annotations

import json
import os
import signal
import threading

import httpx
import torch
from service_helpers import ADMIN, auth, free_port, launch

from unlearnkit.exact import S3TEnsemble
from unlearnkit.service.ledger import Ledger


def test_kill_9_mid_stream_loses_nothing_and_applies_nothing_twice(
    exact_dir, tmp_path, digits_small
):
    bundle, _ = digits_small
    base = S3TEnsemble.load(exact_dir)
    ids = (base.partition.members(0) + base.partition.members(1))[:60]
    token_file = tmp_path / "tokens.json"
    token_file.write_text(
        json.dumps({"tokens": [{"name": "ops", "token": ADMIN, "scopes": ["admin"]}]})
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    acked: dict[int, str] = {}
    with (tmp_path / "server.log").open("wb") as log:
        proc = launch(exact_dir, token_file, port, log)
        try:
            enough = threading.Event()

            def stream() -> None:
                with httpx.Client(base_url=url, timeout=10) as client:
                    for i in ids:
                        try:
                            r = client.post(
                                "/v1/deletions",
                                json={"sample_ids": [i]},
                                headers=auth(ADMIN, f"k{i}"),
                            )
                        except httpx.HTTPError:
                            return  # the server is gone
                        if r.status_code == 202:
                            acked[i] = r.json()["request_id"]
                        if len(acked) >= 15:
                            enough.set()

            sender = threading.Thread(target=stream)
            sender.start()
            assert enough.wait(60)
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the sender is still sending
            sender.join(30)
        finally:
            proc.kill()
            proc.wait()
        assert 15 <= len(acked) < len(ids)

        proc = launch(exact_dir, token_file, port, log)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                for i, rid in acked.items():  # every acknowledged deletion is applied
                    body = client.get(f"/v1/deletions/{rid}", headers=auth()).json()
                    assert body["status"] == "applied" and body["sample_ids"] == [i]
                    again = client.post(
                        "/v1/deletions", json={"sample_ids": [i]}, headers=auth(ADMIN, f"k{i}")
                    )
                    assert again.json()["request_id"] == rid  # the key survived the crash
                model = client.get("/v1/model", headers=auth()).json()
                x = bundle.test.x[:8]
                served = client.post(
                    "/v1/predict", json={"inputs": x.tolist()}, headers=auth()
                ).json()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    ledger = Ledger(exact_dir / "service" / "ledger.sqlite3", {})
    events = ledger.after(0)
    ledger.close()
    deleted = [i for e in events for i in e.payload["sample_ids"]]
    assert len(deleted) == len(set(deleted))  # no sample in two events
    assert set(acked) <= set(deleted)  # (a request in flight at the kill may also be there)
    assert {e.status for e in events} == {"applied"}
    assert model["deleted_samples"] == len(deleted) and model["version"] == len(events)
    base.delete(deleted)  # the model the ledger implies
    expected = torch.softmax(base.predict_logits(x), dim=1)
    torch.testing.assert_close(torch.tensor(served["probabilities"]), expected)
