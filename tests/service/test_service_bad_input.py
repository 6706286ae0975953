"""Bad requests get a 4xx JSON error that names the problem, and change nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from service_helpers import ADMIN, auth, start_service

from unlearnkit.service.app import create_app

GOOD_X = torch.zeros(1, 1, 8, 8).tolist()
BAD = [
    # (name, method, path, kwargs, status, error type, words in the message)
    (
        "malformed json",
        "post",
        "/v1/deletions",
        {"content": b'{"sample_ids": [1,', "headers": {"Content-Type": "application/json"}},
        400,
        "malformed_json",
        "not valid JSON",
    ),
    (
        "wrong content type",
        "post",
        "/v1/deletions",
        {
            "content": b"sample_ids=1",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        415,
        "unsupported_media_type",
        "application/json",
    ),
    (
        "no content type",
        "post",
        "/v1/predict",
        {"content": b"{}"},
        415,
        "unsupported_media_type",
        "none",
    ),
    (
        "missing idempotency key",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": [1]}, "key": None},
        400,
        "missing_idempotency_key",
        "Idempotency-Key",
    ),
    (
        "unknown id",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": [1, 999999]}},
        404,
        "not_found",
        "999999",
    ),
    (
        "empty ids",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": []}},
        422,
        "invalid_request",
        "sample_ids",
    ),
    (
        "ids as strings",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": ["1"]}},
        422,
        "invalid_request",
        "sample_ids.0",
    ),
    (
        "ids not a list",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": 5}},
        422,
        "invalid_request",
        "sample_ids",
    ),
    (
        "duplicate ids",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": [4, 4]}},
        422,
        "invalid_request",
        "listed twice",
    ),
    (
        "too many ids",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": list(range(1001))}},
        422,
        "invalid_request",
        "at most 1000",
    ),
    (
        "extra field",
        "post",
        "/v1/deletions",
        {"json": {"sample_ids": [1], "all": True}},
        422,
        "invalid_request",
        "all",
    ),
    (
        "wrong shape",
        "post",
        "/v1/predict",
        {"json": {"inputs": torch.zeros(2, 3, 8, 8).tolist()}},
        422,
        "invalid_request",
        "(2, 3, 8, 8)",
    ),
    (
        "ragged",
        "post",
        "/v1/predict",
        {"json": {"inputs": [[[1.0, 2.0], [3.0]]]}},
        422,
        "invalid_request",
        "rectangular",
    ),
    (
        "not numbers",
        "post",
        "/v1/predict",
        {"json": {"inputs": [["a"]]}},
        422,
        "invalid_request",
        "rectangular",
    ),
    (
        "huge batch",
        "post",
        "/v1/predict",
        {"json": {"inputs": torch.zeros(300, 1, 8, 8).tolist()}},
        422,
        "invalid_request",
        "at most 256",
    ),
    (
        "both inputs and images",
        "post",
        "/v1/predict",
        {"json": {"inputs": GOOD_X, "images": []}},
        422,
        "invalid_request",
        "exactly one",
    ),
    (
        "bad base64",
        "post",
        "/v1/predict",
        {"json": {"images": ["***"]}},
        422,
        "invalid_request",
        "images[0] is not valid base64",
    ),
    (
        "not an image",
        "post",
        "/v1/predict",
        {"json": {"images": ["aGVsbG8="]}},
        422,
        "invalid_request",
        "images[0] is not a readable",
    ),
    (
        "body too large",
        "post",
        "/v1/predict",
        {
            "content": b"[" + b"0," * 3_000_000 + b"0]",
            "headers": {"Content-Type": "application/json"},
        },
        413,
        "too_large",
        "limit",
    ),
    (
        "lying content-length",
        "post",
        "/v1/predict",
        {"content": b"{}", "headers": {"Content-Type": "application/json", "Content-Length": "x"}},
        413,
        "too_large",
        "limit",
    ),
    ("unknown route", "get", "/v1/nothing", {}, 404, None, ""),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory, s3t_base, tokens):
    """One service for every case: each must leave it exactly as it was."""
    model_dir = Path(shutil.copytree(s3t_base, tmp_path_factory.mktemp("bad") / "s3t"))
    service = start_service(model_dir)
    with TestClient(create_app(service, tokens)) as c:
        c.service = service
        yield c


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_request_is_a_clear_4xx_and_changes_nothing(client, case):
    _, method, path, kwargs, status, kind, words = case
    kwargs = dict(kwargs)
    key = kwargs.pop("key", "k")
    headers = {**auth(ADMIN, key), **kwargs.pop("headers", {})}
    service = client.service
    before = client.post("/v1/predict", json={"inputs": GOOD_X}, headers=auth()).json()
    r = getattr(client, method)(path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    if kind is not None:
        assert body["error"]["type"] == kind
        assert words in body["error"]["message"], body
    assert service.ledger.last_seq() == 0
    assert service.model.version == 0 and not service.model.deleted_ids()
    after = client.post("/v1/predict", json={"inputs": GOOD_X}, headers=auth())
    assert after.status_code == 200 and after.json() == before


def test_error_bodies_are_json_everywhere(client):
    r = client.post(
        "/v1/predict", content=b"null", headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/json")
    assert set(json.loads(r.text)["error"]) == {"type", "message"}
