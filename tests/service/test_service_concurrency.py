"""100 concurrent deletion requests mixed with predictions from several httpx clients against a
real uvicorn server on 127.0.0.1: nothing lost, nothing duplicated, no 5xx."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from service_helpers import ADMIN, DELETE, PREDICT, auth, running_server, start_service, wait_for

from unlearnkit.exact import S3TEnsemble
from unlearnkit.service.app import create_app


def hammer(url: str, ids: list[int], x: torch.Tensor, retries: int = 20) -> dict:
    """Each id in its own request from 8 deletion clients; 20 requests are sent twice with the
    same key (a client retrying); 3 prediction clients predict all along."""
    stop = threading.Event()
    predictions: list[int] = []

    def predictor() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                r = client.post("/v1/predict", json={"inputs": x.tolist()}, headers=auth(PREDICT))
                predictions.append(r.status_code)

    def delete(i: int) -> tuple[int, int, str]:
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.post(
                "/v1/deletions", json={"sample_ids": [i]}, headers=auth(DELETE, f"del-{i}")
            )
            return i, r.status_code, r.json().get("request_id", "")

    readers = [threading.Thread(target=predictor) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(delete, ids + ids[:retries]))
    finally:
        stop.set()
        for t in readers:
            t.join()
    return {"results": results, "predictions": predictions}


def check(out: dict, ids: list[int], service) -> None:
    results = out["results"]
    assert {code for _, code, _ in results} == {202}
    by_id: dict[int, set[str]] = {}
    for i, _, rid in results:
        by_id.setdefault(i, set()).add(rid)
    assert all(len(rids) == 1 for rids in by_id.values())  # a retry got the same request
    assert len({rid for rids in by_id.values() for rid in rids}) == len(ids)
    assert out["predictions"] and set(out["predictions"]) == {200}
    events = [e for e in service.ledger.after(0) if e.kind == "deletion"]
    assert len(events) == len(ids)  # none lost, none duplicated
    assert sorted(i for e in events for i in e.payload["sample_ids"]) == sorted(ids)
    assert {e.status for e in events} == {"applied"}
    assert service.model.deleted_ids() == set(ids)
    metrics = service.metrics.render()
    assert 'status="5' not in metrics


def test_concurrent_deletions_and_predictions_exact(exact_dir, tokens, digits_small):
    bundle, _ = digits_small
    base = S3TEnsemble.load(exact_dir)
    # shards 0 and 1 only, so shard 2 keeps serving while the others die
    ids = (base.partition.members(0) + base.partition.members(1))[:100]
    service = start_service(exact_dir, background_retrain=False)
    with running_server(create_app(service, tokens)) as url:
        out = hammer(url, ids, bundle.test.x[:4])
        check(out, ids, service)
        final = httpx.post(
            f"{url}/v1/predict", json={"inputs": bundle.test.x[:8].tolist()}, headers=auth(ADMIN)
        ).json()
    base.delete(ids)
    expected = torch.softmax(base.predict_logits(bundle.test.x[:8]), dim=1)
    torch.testing.assert_close(torch.tensor(final["probabilities"]), expected)


@pytest.mark.slow
def test_concurrent_deletions_and_predictions_approximate(ntk_dir, tokens):
    from unlearnkit.recipe import load_bundle, load_trained

    _, cfg, _ = load_trained(ntk_dir)
    bundle = load_bundle(cfg)
    ids = bundle.train.ids[:100].tolist()
    service = start_service(ntk_dir, mode="approximate")
    with running_server(create_app(service, tokens)) as url:
        out = hammer(url, ids, bundle.test.x[:4])
        wait_for(lambda: service.applied_seq == service.ledger.last_seq())
        check(out, ids, service)
