"""Issue 28 item 4 (service ergonomics, in part): ``GET /v1/deletions`` with paging and
filters, ISO 8601 times, and ``GET /v1/deletions/{id}/receipt`` that an auditor can archive
and check against the ledger's hash chain."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from fastapi.testclient import TestClient
from service_helpers import ADMIN, DELETE, auth, start_service

from unlearnkit.exact import S3TEnsemble
from unlearnkit.service import TokenStore
from unlearnkit.service.app import create_app
from unlearnkit.service.auth import TokenSpec
from unlearnkit.service.ledger import chain_link

OTHER = "other-delete-token-0001"


def store() -> TokenStore:
    return TokenStore(
        [
            TokenSpec(name="ops", token=ADMIN, scopes=["admin"]),
            TokenSpec(name="privacy", token=DELETE, scopes=["delete"]),
            TokenSpec(name="other", token=OTHER, scopes=["delete"]),
        ]
    )


def test_listing_pages_filters_and_isolates_clients(exact_dir):
    ids = S3TEnsemble.load(exact_dir).partition.members(0, 1)[:5]
    service = start_service(exact_dir, background_retrain=False)
    try:
        with TestClient(create_app(service, store())) as client:
            for i in ids[:4]:
                client.post(
                    "/v1/deletions", json={"sample_ids": [i]}, headers=auth(DELETE, f"p{i}")
                )
            client.post("/v1/deletions", json={"sample_ids": [ids[4]]}, headers=auth(OTHER, "o"))
            pages, cursor = [], None
            while True:
                params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
                page = client.get("/v1/deletions", params=params, headers=auth(DELETE)).json()
                pages.append(page["items"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            admin_all = client.get("/v1/deletions", headers=auth(ADMIN)).json()["items"]
            admin_other = client.get(
                "/v1/deletions", params={"client": "other"}, headers=auth(ADMIN)
            ).json()["items"]
            forbidden = client.get(
                "/v1/deletions", params={"client": "other"}, headers=auth(DELETE)
            )
            failed = client.get(
                "/v1/deletions", params={"status": "failed"}, headers=auth(ADMIN)
            ).json()["items"]
            first_at = admin_all[0]["accepted_at"]
            later = client.get(
                "/v1/deletions", params={"since": admin_all[1]["accepted_at"]}, headers=auth(ADMIN)
            ).json()["items"]
            bad = client.get("/v1/deletions", params={"status": "gone"}, headers=auth(ADMIN))
    finally:
        service.close()
    assert [len(p) for p in pages] == [3, 1]
    mine = [item["sample_ids"] for page in pages for item in page]
    assert mine == [[i] for i in ids[:4]]  # own requests only, oldest first
    assert len(admin_all) == 5 and [x["sample_ids"] for x in admin_other] == [[ids[4]]]
    assert forbidden.status_code == 403
    assert failed == []
    assert len(later) == 4
    assert first_at.endswith("Z") and datetime.fromisoformat(first_at).tzinfo is not None
    assert bad.status_code == 422


def test_receipt_is_archivable_and_checks_against_the_chain(exact_dir):
    (victim,) = S3TEnsemble.load(exact_dir).partition.members(0, 1)[:1]
    service = start_service(exact_dir, background_retrain=False)
    try:
        with TestClient(create_app(service, store())) as client:
            rid = client.post(
                "/v1/deletions", json={"sample_ids": [victim]}, headers=auth(DELETE, "r1")
            ).json()["request_id"]
            receipt = client.get(f"/v1/deletions/{rid}/receipt", headers=auth(DELETE))
            other = client.get(f"/v1/deletions/{rid}/receipt", headers=auth(OTHER))
            event = service.ledger.get(rid)
    finally:
        service.close()
    assert receipt.status_code == 200, receipt.text
    doc = receipt.json()
    assert doc["format"] == "unlearnkit-deletion-receipt/1" and doc["status"] == "applied"
    assert doc["sample_ids"] == [victim] and doc["client"] == "privacy"
    assert doc["receipt"]["model_version_after"] == 1
    assert doc["applied_at"].endswith("Z") and doc["receipt"]["applied_at"].endswith("Z")
    # an auditor recomputes the link from the receipt's request and the previous link
    fields = [
        doc["ledger"]["seq"],
        "deletion",
        rid,
        doc["client"],
        doc["idempotency_key"],
        hashlib.sha256(json.dumps({"sample_ids": [victim]}, sort_keys=True).encode()).hexdigest(),
        {"sample_ids": [victim]},
        event.accepted_at,
    ]
    assert chain_link(doc["ledger"]["previous_link"], fields) == doc["ledger"]["link"]
    assert other.status_code == 404
