"""The HTTP API over an S3T ensemble: predictions, deletions end to end, idempotency, auth,
background retraining of a dead shard, metrics."""

from __future__ import annotations

import base64
import io

import torch
from service_helpers import ADMIN, DELETE, PREDICT, auth, parse_metrics, wait_for

from unlearnkit.exact import S3TEnsemble


def probs_of(client, x: torch.Tensor, token: str = ADMIN) -> tuple[torch.Tensor, int]:
    r = client.post("/v1/predict", json={"inputs": x.tolist()}, headers=auth(token))
    assert r.status_code == 200, r.text
    body = r.json()
    return torch.tensor(body["probabilities"]), body["model_version"]


def ids_in(ensemble: S3TEnsemble, shard: int, slice_: int) -> list[int]:
    return ensemble.partition.members(shard, slice_)


def test_predict_matches_the_ensemble(serve, exact_dir, digits_small):
    bundle, _ = digits_small
    x = bundle.test.x[:5]
    reference = torch.softmax(S3TEnsemble.load(exact_dir).predict_logits(x), dim=1)
    with serve(exact_dir) as client:
        probs, version = probs_of(client, x, PREDICT)
        r = client.post("/v1/predict", json={"inputs": x.tolist()}, headers=auth())
        assert r.json()["predictions"] == reference.argmax(1).tolist()
    assert version == 0
    assert probs.shape == (5, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    torch.testing.assert_close(probs, reference)


def test_predict_from_base64_png_equals_the_same_pixels_as_arrays(serve, exact_dir):
    from PIL import Image

    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (2, 8, 8), dtype=torch.uint8)
    images = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p.numpy(), mode="L").save(buf, format="PNG")
        images.append(base64.b64encode(buf.getvalue()).decode())
    with serve(exact_dir) as client:
        r = client.post("/v1/predict", json={"images": images}, headers=auth(PREDICT))
        assert r.status_code == 200, r.text
        direct, _ = probs_of(client, pixels.float().unsqueeze(1) / 255.0)
    torch.testing.assert_close(torch.tensor(r.json()["probabilities"]), direct)


def test_deletion_end_to_end_switches_the_sample_off(serve, exact_dir, digits_small):
    """request -> ledger -> blocks off -> predictions equal the ensemble without the sample."""
    from unlearnkit.exact import Partition

    bundle, train = digits_small
    x = bundle.test.x[:20]
    base = S3TEnsemble.load(exact_dir)
    victim = ids_in(base, 0, 1)[0]
    with serve(exact_dir) as client:
        before, v0 = probs_of(client, x)
        r = client.post(
            "/v1/deletions", json={"sample_ids": [victim]}, headers=auth(DELETE, "req-1")
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "applied"  # exact mode applies before answering
        receipt = body["receipt"]
        assert receipt["model_version_before"] == v0 and receipt["model_version_after"] == v0 + 1
        sample = receipt["change"]["samples"][0]
        assert (sample["sample_id"], sample["shard"], sample["slice"]) == (victim, 0, 1)
        switched = [a for s in sample["switched_off"] for a in s["adapters"]]
        assert switched  # some block saw the sample and is now off
        status = client.get(f"/v1/deletions/{body['request_id']}", headers=auth(DELETE)).json()
        assert status["status"] == "applied" and status["receipt"] == receipt
        after, v1 = probs_of(client, x)
        model = client.get("/v1/model", headers=auth(PREDICT)).json()
        events = client.service.ledger.after(0)
    assert v1 == v0 + 1 and model["version"] == v1 and model["deleted_samples"] == 1
    assert [(e.kind, e.status, e.payload["sample_ids"]) for e in events] == [
        ("deletion", "applied", [victim])
    ]
    assert not torch.equal(before, after)
    reference = S3TEnsemble.load(exact_dir)
    plan = base.serving_plan()
    base.delete([victim])
    torch.testing.assert_close(after, torch.softmax(base.predict_logits(x), dim=1))
    # and equal to the same procedure run on D without the sample, served with the same prefixes
    part = reference.partition
    retrained = S3TEnsemble.train(
        train,
        reference.config,
        num_classes=10,
        backbone_state=reference.backbone_state,
        partition=Partition(
            part.num_shards, part.num_slices, part.seed, dict(part.owner), {victim}
        ),
    )
    assert base.serving_plan() != plan
    expect = torch.softmax(retrained.predict_logits(x, plan=base.serving_plan()), dim=1)
    torch.testing.assert_close(after, expect)


def test_same_idempotency_key_gives_same_response_and_one_change(serve, exact_dir):
    base = S3TEnsemble.load(exact_dir)
    a, b = ids_in(base, 1, 0)[:2]
    with serve(exact_dir) as client:
        first = client.post("/v1/deletions", json={"sample_ids": [a]}, headers=auth(key="k1"))
        again = client.post("/v1/deletions", json={"sample_ids": [a]}, headers=auth(key="k1"))
        assert first.status_code == again.status_code == 202
        assert first.json() == again.json()
        clash = client.post("/v1/deletions", json={"sample_ids": [b]}, headers=auth(key="k1"))
        assert clash.status_code == 409 and "Idempotency-Key" in clash.json()["error"]["message"]
        twice = client.post("/v1/deletions", json={"sample_ids": [a]}, headers=auth(key="k2"))
        assert twice.status_code == 409 and "already deleted" in twice.json()["error"]["message"]
        # keys are per client: another token may reuse "k1" for its own request
        other = client.post("/v1/deletions", json={"sample_ids": [b]}, headers=auth(DELETE, "k1"))
        assert other.status_code == 202
        model = client.get("/v1/model", headers=auth()).json()
        assert model["version"] == 2 and model["deleted_samples"] == 2
        assert len(client.service.ledger.after(0)) == 2


def test_auth_scopes(serve, exact_dir):
    x = {"inputs": torch.zeros(1, 1, 8, 8).tolist()}
    with serve(exact_dir) as client:
        r = client.post("/v1/predict", json=x)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "unauthorized"
        assert (
            client.post("/v1/predict", json=x, headers=auth("wrong-token-000000000")).status_code
            == 401
        )
        assert (
            client.post("/v1/predict", json=x, headers={"Authorization": ADMIN}).status_code == 401
        )  # not a Bearer header
        r = client.post("/v1/predict", json=x, headers=auth(DELETE))
        assert r.status_code == 403 and "'predict' scope" in r.json()["error"]["message"]
        r = client.post("/v1/deletions", json={"sample_ids": [1]}, headers=auth(PREDICT, "k"))
        assert r.status_code == 403
        assert client.get("/metrics", headers=auth(PREDICT)).status_code == 403
        assert client.get("/metrics", headers=auth(ADMIN)).status_code == 200
        assert client.post("/v1/predict", json=x, headers=auth(PREDICT)).status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"  # no token needed
        assert client.service.ledger.last_seq() == 0


def test_unknown_request_id_is_404(serve, exact_dir):
    with serve(exact_dir) as client:
        r = client.get("/v1/deletions/nope", headers=auth())
    assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]


def test_metrics_in_prometheus_text_format(serve, exact_dir):
    base = S3TEnsemble.load(exact_dir)
    with serve(exact_dir) as client:
        probs_of(client, torch.zeros(2, 1, 8, 8))
        client.post(
            "/v1/deletions", json={"sample_ids": ids_in(base, 2, 0)[:3]}, headers=auth(key="m")
        )
        r = client.get("/metrics", headers=auth())
    assert r.headers["content-type"].startswith("text/plain")
    values, types = parse_metrics(r.text)
    assert values["unlearnkit_deletions_applied_total", ()] == 1
    assert values["unlearnkit_samples_deleted_total", ()] == 3
    assert values["unlearnkit_model_version", ()] == 1
    assert types["unlearnkit_http_request_seconds"] == "histogram"
    assert types["unlearnkit_http_requests"] == "counter"
    predicted = (("method", "POST"), ("route", "/v1/predict"), ("status", "200"))
    assert values["unlearnkit_http_requests_total", predicted] == 1
    deleted = (("le", "+Inf"), ("method", "POST"), ("route", "/v1/deletions"))
    assert values["unlearnkit_http_request_seconds_bucket", deleted] == 1


def test_dead_shard_is_retrained_in_the_background(serve, exact_dir, digits_small):
    bundle, _ = digits_small
    x = bundle.test.x[:10]
    base = S3TEnsemble.load(exact_dir)
    kill = [ids_in(base, 0, 0)[0], ids_in(base, 0, 1)[0]]  # both slices: every sequence dies
    with serve(exact_dir, background_retrain=False) as client:
        client.post("/v1/deletions", json={"sample_ids": kill}, headers=auth(key="kill"))
        model = client.get("/v1/model", headers=auth()).json()
        assert model["dead_shards"] == [0] and model["live_shards"] == [1, 2]
        during, _ = probs_of(client, x)  # still served, from the live shards
    base.delete(kill)
    torch.testing.assert_close(during, torch.softmax(base.predict_logits(x), dim=1))
    with serve(exact_dir) as client:  # restart with the retrainer on
        wait_for(lambda: client.get("/v1/model", headers=auth()).json()["retrains_done"] == 1)
        model = client.get("/v1/model", headers=auth()).json()
        assert model["live_shards"] == [0, 1, 2] and model["dead_shards"] == []
        assert model["ledger"]["events"] == {"deletion_applied": 1, "retrain_applied": 1}
        after, version = probs_of(client, x)
    assert version == 2
    base.retrain_shard(0)
    torch.testing.assert_close(after, torch.softmax(base.predict_logits(x), dim=1))
    with serve(exact_dir, background_retrain=False) as client:  # restart: same served model
        again, version_again = probs_of(client, x)
    assert version_again == version
    assert torch.equal(again, after)


def test_every_shard_dead_is_a_503_with_retry_after(serve, exact_dir):
    base = S3TEnsemble.load(exact_dir)
    kill = [ids_in(base, s, k)[0] for s in range(3) for k in range(2)]
    with serve(exact_dir, background_retrain=False) as client:
        assert (
            client.post(
                "/v1/deletions", json={"sample_ids": kill}, headers=auth(key="all")
            ).status_code
            == 202
        )
        r = client.post(
            "/v1/predict", json={"inputs": torch.zeros(1, 1, 8, 8).tolist()}, headers=auth()
        )
        model = client.get("/v1/model", headers=auth()).json()
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "every shard is dead" in r.json()["error"]["message"]
    assert model["retrains_pending"] == [0, 1, 2]
