"""Restart recovers the exact state from the ledger and snapshots; damaged files refuse to start."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import typer
from service_helpers import auth, start_service
from typer.testing import CliRunner

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact import S3TEnsemble
from unlearnkit.service.ledger import Ledger
from unlearnkit.service.snapshots import POINTER


def crash(service) -> None:
    """Stop the worker threads without the final snapshot a clean close writes."""
    service.close(final_snapshot=False)


def delete_one_by_one(service, ids: list[int], who) -> list[str]:
    return [service.submit_deletion(who, [i], f"key-{i}")[0].request_id for i in ids]


@pytest.fixture
def who():
    from unlearnkit.service.auth import Principal

    return Principal(name="ops", scopes=frozenset({"admin"}))


def some_ids(model_dir, n: int) -> list[int]:
    """Ids spread so that no shard dies (slice 1 of shards 0 and 1 only)."""
    ens = S3TEnsemble.load(model_dir)
    ids = ens.partition.members(0, 1)[: n // 2] + ens.partition.members(1, 1)[: n - n // 2]
    return ids


def test_crash_then_restart_replays_exactly_the_missing_events(exact_dir, digits_small, who):
    bundle, _ = digits_small
    x = bundle.test.x[:16]
    ids = some_ids(exact_dir, 8)
    service = start_service(
        exact_dir, snapshot_every=3, background_retrain=False, snapshot_interval_s=3600
    )
    delete_one_by_one(service, ids, who)
    probs_before, version = service.predict(x)
    snapshot_seq = service.snapshot_seq
    crash(service)
    assert 0 < snapshot_seq < len(ids)  # some events are only in the ledger

    again = start_service(exact_dir, background_retrain=False)
    try:
        assert again.replayed == len(ids) - snapshot_seq
        probs_after, version_after = again.predict(x)
        events = again.ledger.after(0)
    finally:
        again.close()
    assert version_after == version == len(ids)
    assert torch.equal(probs_after, probs_before)
    assert [e.payload["sample_ids"] for e in events] == [[i] for i in ids]
    assert all(e.status == "applied" for e in events)
    reference = S3TEnsemble.load(exact_dir)
    reference.delete(ids)
    torch.testing.assert_close(probs_after, torch.softmax(reference.predict_logits(x), 1))


def test_accepted_but_unapplied_events_are_applied_on_restart(exact_dir, who):
    """A deletion durable in the ledger but never applied (crash between) is applied once."""
    service = start_service(exact_dir, background_retrain=False)
    identity = service.model.identity()
    crash(service)
    ids = some_ids(exact_dir, 2)
    ledger = Ledger(exact_dir / "service" / "ledger.sqlite3", identity)
    for i in ids:
        ledger.append("deletion", "ops", {"sample_ids": [i]}, f"k{i}")
    ledger.close()
    again = start_service(exact_dir, background_retrain=False)
    try:
        assert again.replayed == 2
        assert again.model.deleted_ids() == set(ids) and again.model.version == 2
        assert [e.status for e in again.ledger.after(0)] == ["applied", "applied"]
        receipt = again.ledger.after(0)[0].receipt
        assert receipt["replayed"] is True
    finally:
        again.close()
    third = start_service(exact_dir, background_retrain=False)  # nothing applied twice
    try:
        assert third.replayed == 0 and third.model.version == 2
    finally:
        third.close()


def test_clean_restart_serves_the_same_model_and_answers_old_requests(serve, exact_dir, who):
    ids = some_ids(exact_dir, 4)
    x = torch.randn(4, 1, 8, 8)
    with serve(exact_dir) as client:
        r = client.post("/v1/deletions", json={"sample_ids": ids}, headers=auth(key="batch"))
        rid = r.json()["request_id"]
        before = client.post("/v1/predict", json={"inputs": x.tolist()}, headers=auth()).json()
    with serve(exact_dir) as client:
        assert client.service.replayed == 0  # the final snapshot had everything
        after = client.post("/v1/predict", json={"inputs": x.tolist()}, headers=auth()).json()
        old = client.get(f"/v1/deletions/{rid}", headers=auth()).json()
        again = client.post("/v1/deletions", json={"sample_ids": ids}, headers=auth(key="batch"))
    assert after == before
    assert old["status"] == "applied" and old["sample_ids"] == sorted(ids)
    assert again.status_code == 202 and again.json()["request_id"] == rid


def corrupt(path, offset_from_end: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_ledger_refuses_to_start(exact_dir, who):
    service = start_service(exact_dir, background_retrain=False)
    delete_one_by_one(service, some_ids(exact_dir, 1), who)
    service.close()
    ledger = exact_dir / "service" / "ledger.sqlite3"
    ledger.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UnlearnkitError, match=r"ledger .* is corrupt or unreadable"):
        start_service(exact_dir)


def test_corrupt_snapshot_refuses_to_start(exact_dir, who):
    service = start_service(exact_dir, background_retrain=False)
    delete_one_by_one(service, some_ids(exact_dir, 1), who)
    service.close()
    pointer = json.loads((exact_dir / "service" / POINTER).read_text())
    snap = exact_dir / "service" / "snapshots" / pointer["snapshot"]
    blocks = next(p for p in snap.iterdir() if p.name.startswith("blocks-"))
    corrupt(blocks)
    with pytest.raises(UnlearnkitError, match="does not match its checksum"):
        start_service(exact_dir)


def test_corrupt_base_model_refuses_to_start(exact_dir):
    blocks = next(
        p
        for p in exact_dir.iterdir()
        if p.name.startswith("blocks-") and p.suffix == ".safetensors"
    )
    corrupt(blocks)
    with pytest.raises(UnlearnkitError, match="does not match its checksum"):
        start_service(exact_dir)


def test_lost_ledger_or_foreign_ledger_refuses_to_start(exact_dir, ntk_dir, who):
    service = start_service(exact_dir, background_retrain=False)
    delete_one_by_one(service, some_ids(exact_dir, 1), who)
    service.close()
    ledger = exact_dir / "service" / "ledger.sqlite3"
    saved = ledger.read_bytes()
    for suffix in ("-wal", "-shm"):
        (exact_dir / "service" / f"ledger.sqlite3{suffix}").unlink(missing_ok=True)
    ledger.unlink()
    with pytest.raises(UnlearnkitError, match="is missing, but deletions were acknowledged"):
        start_service(exact_dir)
    ledger.write_bytes(saved)
    other = start_service(ntk_dir, mode="approximate")
    other.close()
    shutil.copy(ntk_dir / "service" / "ledger.sqlite3", ledger)
    with pytest.raises(UnlearnkitError, match="belongs to another model"):
        start_service(exact_dir)


def test_cli_refuses_with_one_line_and_exit_code_2(exact_dir, tmp_path, monkeypatch):
    from unlearnkit.cli.serve import mount

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that the command is called "serve"
    mount(app)
    runner = CliRunner()
    monkeypatch.setenv(
        "UNLEARNKIT_TOKENS",
        json.dumps({"tokens": [{"name": "ops", "token": "t" * 20, "scopes": ["admin"]}]}),
    )
    (exact_dir / "service").mkdir()
    (exact_dir / "service" / "ledger.sqlite3").write_bytes(b"garbage" * 200)
    cases = [
        (["--from", str(exact_dir)], "ledger"),
        (["--from", str(tmp_path / "missing")], "not a directory"),
        (["--from", str(exact_dir), "--mode", "fuzzy"], "unknown serving mode 'fuzzy'"),
    ]
    for args, words in cases:
        res = runner.invoke(app, ["serve", *args])
        assert res.exit_code == 2, res.output
        assert words in res.output and "Traceback" not in res.output
        assert res.output.strip().startswith("error:")
    monkeypatch.delenv("UNLEARNKIT_TOKENS")
    res = runner.invoke(app, ["serve", "--from", str(exact_dir)])
    assert res.exit_code == 2 and "no API tokens configured" in res.output
