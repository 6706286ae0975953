"""Issue 30, finding 6: the smaller rules of requests, tokens and documents, each reproduced.

A repeat of an Idempotency-Key answers as the original does (applied, with its receipt); a key
is visible ASCII in exactly one header; a request is readable by its creator and admins only;
``/healthz`` says nothing but liveness; an expired token is refused; Content-Length with
Transfer-Encoding is refused; a 403 spends no rate allowance; the OpenAPI document declares
bearer auth."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
from fastapi.testclient import TestClient
from service_helpers import ADMIN, DELETE, PREDICT, auth, running_server, start_service

from unlearnkit.exact import S3TEnsemble
from unlearnkit.service import TokenStore
from unlearnkit.service import applier as applier_module
from unlearnkit.service.app import create_app
from unlearnkit.service.auth import TokenSpec

OTHER = "other-delete-token-0001"


def victims(model_dir, n: int) -> list[int]:
    return S3TEnsemble.load(model_dir).partition.members(0, 1)[:n]


def test_a_repeat_while_the_original_is_applied_answers_applied_with_the_receipt(
    serve, exact_dir, monkeypatch
):
    (victim,) = victims(exact_dir, 1)
    slow = threading.Event()
    real = applier_module.apply_group

    def slow_apply(*args, **kwargs):
        slow.set()
        time.sleep(0.5)  # the window in which a repeat used to answer "accepted"
        return real(*args, **kwargs)

    monkeypatch.setattr(applier_module, "apply_group", slow_apply)
    with serve(exact_dir, background_retrain=False) as client:
        first: dict[str, httpx.Response] = {}
        sender = threading.Thread(
            target=lambda: first.update(
                r=client.post(
                    "/v1/deletions", json={"sample_ids": [victim]}, headers=auth(key="same")
                )
            )
        )
        sender.start()
        assert slow.wait(10)
        repeat = client.post(
            "/v1/deletions", json={"sample_ids": [victim]}, headers=auth(key="same")
        )
        sender.join(10)
    original = first["r"].json()
    assert original["status"] == "applied" and original["receipt"]
    assert repeat.status_code == 202
    assert repeat.json() == original  # the same request, applied, with its receipt


def test_idempotency_keys_are_visible_ascii_in_exactly_one_header(serve, exact_dir):
    (victim,) = victims(exact_dir, 1)
    body = {"sample_ids": [victim]}
    with serve(exact_dir, background_retrain=False) as client:
        utf8 = client.post(
            "/v1/deletions",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN}", "Idempotency-Key": "clé".encode()},
        )
        spaced = client.post("/v1/deletions", json=body, headers=auth(key="a b"))
        two = client.post(
            "/v1/deletions",
            json=body,
            headers=[
                ("Authorization", f"Bearer {ADMIN}"),
                ("Idempotency-Key", "first"),
                ("Idempotency-Key", "second"),
            ],
        )
        rows = client.service.ledger.last_seq()
        ok = client.post("/v1/deletions", json=body, headers=auth(key="secret-ticket-4711"))
    for r in (utf8, spaced, two):
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_idempotency_key"
    assert "exactly one" in two.json()["error"]["message"]
    assert rows == 0  # nothing recorded for any of them
    assert ok.status_code == 202 and ok.json()["idempotency_key"] == "secret-ticket-4711"


def two_clients() -> TokenStore:
    return TokenStore(
        [
            TokenSpec(name="ops", token=ADMIN, scopes=["admin"]),
            TokenSpec(name="privacy", token=DELETE, scopes=["delete"]),
            TokenSpec(name="other", token=OTHER, scopes=["delete"]),
        ]
    )


def test_a_request_is_readable_by_its_creator_and_admins_only(exact_dir):
    (victim,) = victims(exact_dir, 1)
    service = start_service(exact_dir, background_retrain=False)
    try:
        with TestClient(create_app(service, two_clients())) as client:
            rid = client.post(
                "/v1/deletions", json={"sample_ids": [victim]}, headers=auth(DELETE, "mine")
            ).json()["request_id"]
            creator = client.get(f"/v1/deletions/{rid}", headers=auth(DELETE))
            admin = client.get(f"/v1/deletions/{rid}", headers=auth(ADMIN))
            other = client.get(f"/v1/deletions/{rid}", headers=auth(OTHER))
            missing = client.get("/v1/deletions/nope", headers=auth(OTHER))
    finally:
        service.close()
    assert creator.status_code == admin.status_code == 200
    assert creator.json()["idempotency_key"] == "mine"
    assert other.status_code == 404 and "mine" not in other.text
    assert other.json()["error"]["message"].replace(rid, "X") == missing.json()["error"][
        "message"
    ].replace("nope", "X")  # indistinguishable from a request that does not exist


def test_healthz_reveals_nothing_but_liveness(serve, exact_dir):
    with serve(exact_dir, background_retrain=False) as client:
        body = client.get("/healthz").json()
    assert body == {"status": "ok"}


def test_token_expiry_is_honoured(exact_dir, tmp_path):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    path = tmp_path / "tokens.yaml"
    path.write_text(
        f"tokens:\n"
        f"  - {{name: old, token: {PREDICT}, scopes: [predict], expires_at: '{past}'}}\n"
        f"  - {{name: new, token: {ADMIN}, scopes: [admin], expires_at: '{future}'}}\n"
    )
    store = TokenStore.from_sources(path)  # the file with expires_at is valid
    service = start_service(exact_dir, background_retrain=False)
    try:
        with TestClient(create_app(service, store)) as client:
            expired = client.get("/v1/model", headers=auth(PREDICT))
            valid = client.get("/v1/model", headers=auth(ADMIN))
    finally:
        service.close()
    assert expired.status_code == 401 and valid.status_code == 200


def test_content_length_with_transfer_encoding_is_refused(exact_dir, tokens):
    (victim,) = victims(exact_dir, 1)
    body = f'{{"sample_ids": [{victim}]}}'.encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = (
        "POST /v1/deletions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {ADMIN}\r\nIdempotency-Key: smuggle\r\n"
        f"Content-Length: {len(chunked)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    service = start_service(exact_dir, background_retrain=False)
    try:
        with running_server(create_app(service, tokens)) as url:
            host, port = url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(head + chunked)
                sock.settimeout(10)
                answer = sock.recv(65536)
            rows = service.ledger.last_seq()
    finally:
        service.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert rows == 0


def test_a_403_does_not_spend_the_rate_allowance(serve, exact_dir):
    with serve(exact_dir, background_retrain=False, rate_limit=0.01, rate_burst=2) as client:
        refused = [
            client.post(
                "/v1/deletions", json={"sample_ids": [1]}, headers=auth(PREDICT, f"k{i}")
            ).status_code
            for i in range(5)
        ]
        allowed = [client.get("/v1/model", headers=auth(PREDICT)).status_code for _ in range(3)]
    assert refused == [403] * 5
    assert allowed == [200, 200, 429]  # the whole burst was still there


def test_openapi_declares_bearer_auth(serve, exact_dir):
    with serve(exact_dir, background_retrain=False) as client:
        doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert [s for s in schemes.values() if s == {**s, "type": "http", "scheme": "bearer"}]
    name = next(iter(schemes))
    for path, method in (("/v1/deletions", "post"), ("/v1/predict", "post"), ("/metrics", "get")):
        assert {name: []} in doc["paths"][path][method]["security"]
    assert "security" not in doc["paths"]["/healthz"]["get"]
