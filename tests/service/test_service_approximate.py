"""Approximate mode: deletions are queued, applied as Woodbury downdates of the NTK state, and
the served linearized model equals the one retrained in closed form on the remaining data."""

from __future__ import annotations

import pytest
import torch
from service_helpers import DELETE, auth, pixel_inputs, start_service, wait_for

from unlearnkit.errors import NotFoundError
from unlearnkit.recipe import load_bundle, load_trained
from unlearnkit.service.auth import Principal

WHO = Principal(name="ops", scopes=frozenset({"admin"}))


@pytest.fixture(scope="module")
def ntk_parts(ntk_base):
    trained, cfg, _ = load_trained(ntk_base)
    return trained, load_bundle(cfg)


def retrained_probs(ntk_parts, deleted: list[int], x: torch.Tensor) -> torch.Tensor:
    """The linearized model solved from scratch on D without ``deleted``."""
    from unlearnkit.ntk.incremental import precompute_state
    from unlearnkit.ntk.update import linearized_model

    trained, bundle = ntk_parts
    keep = bundle.train.drop_ids(deleted)
    state = precompute_state(
        trained.model, trained.trainable, trained.initial_state, keep, bundle.num_classes, 0.5
    )
    model = linearized_model(
        trained.model, trained.trainable, trained.initial_state, state.solution
    )
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


def test_deletion_is_queued_then_applied_and_equals_retraining(serve, ntk_dir, ntk_parts):
    _, bundle = ntk_parts
    x, sent = pixel_inputs(bundle.preprocessing, bundle.test.x[:12])  # inputs are pixels
    victims = bundle.train.ids[[3, 50, 77]].tolist()
    with serve(ntk_dir, mode="approximate") as client:
        before = client.post("/v1/predict", json={"inputs": sent}, headers=auth()).json()
        assert before["model_version"] == 0
        r = client.post("/v1/deletions", json={"sample_ids": victims}, headers=auth(DELETE, "a"))
        assert r.status_code == 202 and r.json()["status"] in ("accepted", "applied")
        rid = r.json()["request_id"]

        def applied() -> bool:
            body = client.get(f"/v1/deletions/{rid}", headers=auth(DELETE)).json()
            return body["status"] == "applied"

        wait_for(applied)
        status = client.get(f"/v1/deletions/{rid}", headers=auth(DELETE)).json()
        after = client.post("/v1/predict", json={"inputs": sent}, headers=auth()).json()
        model = client.get("/v1/model", headers=auth()).json()
    change = status["receipt"]["change"]
    assert change["kind"] == "ntk_downdate" and change["samples"] == 3 and change["rank"] == 30
    assert model["deleted_samples"] == 3 and model["version"] == after["model_version"] == 1
    assert model["retrains_pending"] == [] and model["retrains_done"] == 0
    assert after["probabilities"] != before["probabilities"]
    torch.testing.assert_close(
        torch.tensor(after["probabilities"]),
        retrained_probs(ntk_parts, victims, x),
        atol=1e-5,
        rtol=1e-4,
    )


def test_queued_deletions_are_applied_as_one_downdate(ntk_dir, ntk_parts):
    _, bundle = ntk_parts
    ids = bundle.train.ids[:4].tolist()
    service = start_service(ntk_dir, mode="approximate")
    try:
        with service.model_lock.writing():  # hold the applier back while three queue up
            events = [service.submit_deletion(WHO, [i], f"k{i}")[0] for i in ids[:3]]
            assert all(e.status == "accepted" for e in events)
        wait_for(lambda: all(service.ledger.get(e.request_id).status == "applied" for e in events))
        receipts = [service.ledger.get(e.request_id).receipt for e in events]
        assert service.model.version == 1  # one change for the three of them
        assert {r["change"]["samples"] for r in receipts} == {3}
        # an unknown id is refused before anything is written
        with pytest.raises(NotFoundError, match="not in the training set"):
            service.submit_deletion(WHO, [10**9], "bad")
        assert service.ledger.last_seq() == 3
    finally:
        service.close()


def test_approximate_restart_replays_the_ledger(ntk_dir, ntk_parts):
    from test_service_recovery import crash

    _, bundle = ntk_parts
    x = bundle.test.x[:8]
    ids = bundle.train.ids[10:15].tolist()
    service = start_service(ntk_dir, mode="approximate", snapshot_every=2, snapshot_interval_s=3600)
    for i in ids:
        service.submit_deletion(WHO, [i], f"k{i}")
    wait_for(lambda: service.applied_seq == len(ids))
    before, version = service.predict(x)
    crash(service)
    again = start_service(ntk_dir, mode="approximate")
    try:
        after, version_after = again.predict(x)
        assert again.model.deleted_ids() == set(ids)
        assert version_after == version
    finally:
        again.close()
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(after, retrained_probs(ntk_parts, ids, x), atol=1e-5, rtol=1e-4)


def test_paper_update_mode_serves_and_deletes(serve, ntk_dir, ntk_parts):
    _, bundle = ntk_parts
    x, sent = pixel_inputs(bundle.preprocessing, bundle.test.x[:6])  # inputs are pixels
    with serve(ntk_dir, mode="approximate", ntk_update="paper") as client:
        first = client.post("/v1/predict", json={"inputs": sent}, headers=auth()).json()
        trained, _ = ntk_parts
        with torch.no_grad():
            plain = torch.softmax(trained.model.eval()(x), dim=1)
        # before any deletion w_Dr = w_D: the served network is the trained one
        torch.testing.assert_close(torch.tensor(first["probabilities"]), plain)
        r = client.post(
            "/v1/deletions",
            json={"sample_ids": bundle.train.ids[:20].tolist()},
            headers=auth(key="p"),
        )
        wait_for(
            lambda: (
                client.get(f"/v1/deletions/{r.json()['request_id']}", headers=auth()).json()[
                    "status"
                ]
                == "applied"
            )
        )
        second = client.post("/v1/predict", json={"inputs": sent}, headers=auth()).json()
        assert client.get("/v1/model", headers=auth()).json()["update"] == "paper"
    assert second["model_version"] == 1 and second["probabilities"] != first["probabilities"]


def test_approximate_mode_needs_an_ntk_state(ntk_dir):
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.service.approximate import STATE_FILE

    (ntk_dir / STATE_FILE).unlink()
    with pytest.raises(UnlearnkitError, match="ntk precompute"):
        start_service(ntk_dir, mode="approximate")


def test_config_errors_name_the_field(ntk_dir):
    from pydantic import ValidationError

    from unlearnkit.service import ServiceConfig

    with pytest.raises(ValidationError, match="ntk_update"):
        ServiceConfig(model_dir=ntk_dir, mode="approximate", ntk_update="magic")
    with pytest.raises(ValidationError, match="max_batch"):
        ServiceConfig(model_dir=ntk_dir, max_batch=0)
