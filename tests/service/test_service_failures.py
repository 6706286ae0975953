"""The service's own failures are 5xx with a JSON body, never the user's fault; a retrain runs
with the model lock released and a deletion that reaches its shard meanwhile is honoured."""

from __future__ import annotations

import dataclasses
import threading

import torch
from service_helpers import auth, start_service, wait_for

from unlearnkit.errors import InternalError
from unlearnkit.exact import S3TEnsemble
from unlearnkit.service.auth import Principal

WHO = Principal(name="ops", scopes=frozenset({"admin"}))
X = torch.zeros(2, 1, 8, 8)


def victims(model_dir, shard: int, slice_: int, n: int = 1) -> list[int]:
    return S3TEnsemble.load(model_dir).partition.members(shard, slice_)[:n]


def test_ledger_removed_while_serving_refuses_changes_with_a_500(serve, exact_dir):
    (victim,) = victims(exact_dir, 0, 1)
    with serve(exact_dir, background_retrain=False) as client:
        assert client.get("/healthz").status_code == 200
        ledger = exact_dir / "service" / "ledger.sqlite3"
        ledger.rename(ledger.with_name("moved.sqlite3"))
        r = client.post("/v1/deletions", json={"sample_ids": [victim]}, headers=auth(key="a"))
        health = client.get("/healthz")
        predicted = client.post("/v1/predict", json={"inputs": X.tolist()}, headers=auth())
        version = client.service.model.version
    assert r.status_code == 500, r.text
    assert r.json()["error"]["type"] == "internal_error"
    assert "removed or replaced" in r.json()["error"]["message"]
    assert health.status_code == 503 and health.json()["status"] == "failing"
    assert predicted.status_code == 200 and version == 0  # predictions go on, nothing changed


def test_a_passing_ledger_failure_is_a_503_with_retry_after(serve, exact_dir, monkeypatch):
    (victim,) = victims(exact_dir, 0, 1)
    with serve(exact_dir, background_retrain=False) as client:
        ledger = client.service.ledger
        message = f"ledger {ledger.path}: cannot record an event (database is locked)"

        def busy(*args, **kwargs):
            raise InternalError(message)

        with monkeypatch.context() as patch:
            patch.setattr(ledger, "append", busy)
            r = client.post("/v1/deletions", json={"sample_ids": [victim]}, headers=auth(key="a"))
        again = client.post("/v1/deletions", json={"sample_ids": [victim]}, headers=auth(key="a"))
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["error"] == {"type": "unavailable", "message": message}
    assert again.status_code == 202 and again.json()["status"] == "applied"  # the retry works


def test_results_that_cannot_be_recorded_stop_the_applier_and_a_restart_applies_them(
    tokens, exact_dir, monkeypatch
):
    from fastapi.testclient import TestClient

    from unlearnkit.service.app import create_app

    first, second = victims(exact_dir, 0, 1, 2)
    service = start_service(exact_dir, background_retrain=False)
    monkeypatch.setattr(service.ledger, "finish", lambda rows: 1 / 0)
    with TestClient(create_app(service, tokens)) as client:
        r = client.post("/v1/deletions", json={"sample_ids": [first]}, headers=auth(key="a"))
        later = client.post("/v1/deletions", json={"sample_ids": [second]}, headers=auth(key="b"))
        health = client.get("/healthz").json()
        reason = client.get("/v1/model", headers=auth()).json()["failure"]
    assert r.status_code == 500 and "restarting the service applies it" in r.text
    assert later.status_code == 500 and "restart the service" in later.text
    assert health == {"status": "failing"} and "applier stopped" in reason  # reason: admin only
    assert service.snapshot_seq == 0  # no snapshot of a model ahead of its ledger
    monkeypatch.undo()
    again = start_service(exact_dir, background_retrain=False)
    try:
        assert again.replayed == 1 and again.model.deleted_ids() == {first}
        assert [e.status for e in again.ledger.after(0)] == ["applied"]
    finally:
        again.close()


def test_retrain_trains_without_the_model_lock_and_honours_a_deletion_meanwhile(
    exact_dir, digits_small, monkeypatch
):
    bundle, _ = digits_small
    x = bundle.test.x[:10]
    kill = victims(exact_dir, 0, 0) + victims(exact_dir, 0, 1)  # both slices: shard 0 dies
    late = victims(exact_dir, 0, 1, 2)[1]
    service = start_service(exact_dir, retrain_poll_s=0.05)
    training, release = threading.Event(), threading.Event()
    prepare = service.model.prepare_retrain
    calls = []

    def held_back(unit):  # the first retrain waits, mid-training, until released
        job = prepare(unit)
        calls.append(unit)
        if len(calls) > 1:
            return job

        def train(inputs):
            training.set()
            assert release.wait(60)
            return job.train(inputs)

        return dataclasses.replace(job, train=train)

    monkeypatch.setattr(service.model, "prepare_retrain", held_back)
    try:
        service.submit_deletion(WHO, kill, "kill")
        assert training.wait(30)
        answer: list = []
        reader = threading.Thread(target=lambda: answer.append(service.predict(x)))
        reader.start()
        reader.join(10)
        assert answer, "a prediction waited for the retrain"
        event, _ = service.submit_deletion(WHO, [late], "late")  # reaches the shard mid-retrain
        assert service.ledger.get(event.request_id).status == "applied"
        release.set()
        wait_for(lambda: service.model.pending_retrains() == [] and len(calls) == 2)
        wait_for(lambda: service.applied_seq == service.ledger.last_seq())
        events = service.ledger.after(0)
        served, _ = service.predict(x)
    finally:
        release.set()
        service.close()
    assert [(e.kind, e.status) for e in events] == [
        ("deletion", "applied"),
        ("deletion", "applied"),
        ("retrain", "failed"),  # prepared before the late deletion: refused
        ("retrain", "applied"),  # prepared again without the late sample
    ]
    assert "had deletions after this retrain was prepared" in events[2].reason
    base = S3TEnsemble.load(exact_dir)
    base.delete([*kill, late])
    base.retrain_shard(0)
    torch.testing.assert_close(served, torch.softmax(base.predict_logits(x), dim=1))
