"""Limits of a public endpoint: body size, ids per deletion, samples per prediction, a per-token
rate limit. Each refusal is a clear JSON 4xx and changes neither the ledger nor the model."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from service_helpers import DELETE, PREDICT, auth

from unlearnkit.service.ratelimit import RateLimiter

X = torch.zeros(2, 1, 8, 8)


def fingerprint(client) -> tuple[int, int, str]:
    """Ledger rows, model version and a hash of the served predictions on a fixed input."""
    service = client.service
    probs, version = service.predict(X)
    digest = hashlib.sha256(probs.numpy().tobytes()).hexdigest()
    return service.ledger.last_seq(), version, digest


def test_body_over_the_configured_limit_is_a_413(serve, exact_dir):
    with serve(exact_dir, background_retrain=False, max_body_bytes=2048) as client:
        before = fingerprint(client)
        body = json.dumps({"sample_ids": list(range(600))}).encode()  # about 2.9 kB
        assert len(body) > 2048
        r = client.post(
            "/v1/deletions",
            content=body,
            headers={**auth(key="big"), "Content-Type": "application/json"},
        )
        assert r.status_code == 413, r.text
        assert r.json()["error"]["type"] == "too_large"
        assert "2048-byte limit" in r.json()["error"]["message"]
        assert fingerprint(client) == before


def test_too_many_ids_per_deletion_is_a_422(serve, exact_dir):
    with serve(exact_dir, background_retrain=False, max_delete_ids=3) as client:
        before = fingerprint(client)
        r = client.post(
            "/v1/deletions", json={"sample_ids": [0, 1, 2, 3]}, headers=auth(key="four")
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"] == {
            "type": "invalid_request",
            "message": "sample_ids has 4 ids; at most 3 per request",
        }
        assert fingerprint(client) == before


@pytest.mark.parametrize("field", ["inputs", "images"])
def test_too_many_samples_per_prediction_is_a_422(serve, exact_dir, field):
    with serve(exact_dir, background_retrain=False, max_batch=2) as client:
        before = fingerprint(client)
        items = torch.zeros(3, 1, 8, 8).tolist() if field == "inputs" else ["AAAA"] * 3
        r = client.post("/v1/predict", json={field: items}, headers=auth(PREDICT))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"] == f"{field} has 3 items; at most 2 per request"
        assert fingerprint(client) == before


def test_rate_limit_per_token_is_a_429_with_retry_after(serve, exact_dir):
    with serve(exact_dir, background_retrain=False, rate_limit=0.01, rate_burst=2) as client:
        before = fingerprint(client)
        ok = [client.get("/v1/deletions/x", headers=auth(DELETE)).status_code for _ in range(2)]
        r = client.post("/v1/deletions", json={"sample_ids": [0]}, headers=auth(DELETE, "k"))
        other = client.post("/v1/predict", json={"inputs": X.tolist()}, headers=auth(PREDICT))
        assert ok == [404, 404]
        assert r.status_code == 429, r.text
        assert r.json()["error"]["type"] == "rate_limited"
        assert "'privacy'" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert other.status_code == 200  # another token has its own bucket
        assert fingerprint(client) == before


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0
    now[0] = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    now[0] = 100.0  # refills up to the burst, not beyond
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert limiter.take("a") > 0
    assert RateLimiter.retry_after(0.01) == "1" and RateLimiter.retry_after(2.2) == "3"
    assert RateLimiter(rate=0, burst=1).take("a") == 0.0  # off
