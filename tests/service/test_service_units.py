"""Pieces of the service on their own: ledger, tokens, metrics, the exact adapter's clone."""

from __future__ import annotations

import pickle
import re
import time

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.service.auth import TokenStore
from unlearnkit.service.ledger import Ledger
from unlearnkit.service.metrics import service_metrics


def test_ledger_orders_dedups_and_survives_reopen(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path, {"mode": "exact", "ownership": "abc"})
    seen = []
    first, created = ledger.append(
        "deletion", "ops", {"sample_ids": [1]}, "k1", on_commit=seen.append
    )
    again, created_again = ledger.append("deletion", "ops", {"sample_ids": [1]}, "k1")
    assert created and not created_again and again.request_id == first.request_id
    with pytest.raises(ConflictError, match="different request"):
        ledger.append("deletion", "ops", {"sample_ids": [2]}, "k1")
    other, _ = ledger.append("deletion", "other", {"sample_ids": [2]}, "k1")  # per client
    assert [e.seq for e in seen] == [1] and other.seq == 2
    ledger.finish([(1, "applied", {"ok": True}, None), (2, "failed", None, "why")])
    assert ledger.claimed_ids() == {1: first.request_id}  # failed deletions release ids
    ledger.close()
    reopened = Ledger(path, {"mode": "exact", "ownership": "abc"})
    assert [(e.status, e.receipt, e.reason) for e in reopened.after(0)] == [
        ("applied", {"ok": True}, None),
        ("failed", None, "why"),
    ]
    assert reopened.counts() == {"deletion_applied": 1, "deletion_failed": 1}
    reopened.close()
    with pytest.raises(UnlearnkitError, match="its ownership is 'abc'"):
        Ledger(path, {"mode": "exact", "ownership": "xyz"})


def test_ledger_uses_wal(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3", {})
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ledger.close()


@pytest.mark.parametrize(
    "text, words",
    [
        ("tokens: [", "not valid YAML"),
        ('{"tokens": []}', "tokens"),
        ('{"tokens": [{"name": "a", "token": "short", "scopes": ["admin"]}]}', "tokens.0.token"),
        (
            '{"tokens": [{"name": "a", "token": "x123456789012345678", "scopes": ["root"]}]}',
            "tokens.0.scopes.0",
        ),
        (
            '{"tokens": [{"name": "a", "token": "x123456789012345678", "scopes": ["admin"]},'
            ' {"name": "a", "token": "y123456789012345678", "scopes": ["admin"]}]}',
            "unique",
        ),
    ],
)
def test_token_file_errors_name_the_field(text, words):
    with pytest.raises(UnlearnkitError, match=words):
        TokenStore.parse(text, "tokens.yaml")


def test_tokens_from_file_and_scopes(tmp_path, monkeypatch):
    path = tmp_path / "t.yaml"
    path.write_text(
        "tokens:\n  - {name: app, token: app-secret-0000000001, scopes: [predict]}\n"
        "  - {name: ops, token: ops-secret-0000000001, scopes: [admin]}\n"
    )
    store = TokenStore.from_sources(path)
    app, ops = store.identify("app-secret-0000000001"), store.identify("ops-secret-0000000001")
    assert app.name == "app" and app.allows("predict") and not app.allows("delete")
    assert ops.allows("delete") and ops.allows("predict")  # admin implies the others
    assert store.identify("app-secret-0000000002") is None
    monkeypatch.delenv("UNLEARNKIT_TOKENS", raising=False)
    with pytest.raises(UnlearnkitError, match="no API tokens configured"):
        TokenStore.from_sources(None)


def test_metrics_render_cumulative_histograms():
    reg = service_metrics()
    for v in (0.0005, 0.003, 0.003, 20.0):
        reg.observe("unlearnkit_http_request_seconds", v, route="/x", method="GET")
    (family,) = [
        f
        for f in text_string_to_metric_families(reg.render())
        if f.name == "unlearnkit_http_request_seconds"
    ]
    assert family.type == "histogram"
    got = {
        (s.name, s.labels.get("le")): s.value
        for s in family.samples
        if s.labels.get("route") == "/x" and s.labels.get("method") == "GET"
    }
    assert got[("unlearnkit_http_request_seconds_bucket", "0.001")] == 1
    assert got[("unlearnkit_http_request_seconds_bucket", "0.005")] == 3
    assert got[("unlearnkit_http_request_seconds_bucket", "+Inf")] == 4
    assert got[("unlearnkit_http_request_seconds_count", None)] == 4
    assert got[("unlearnkit_http_request_seconds_sum", None)] == pytest.approx(20.0065)


def test_exact_clone_while_a_retrain_runs_through_the_service(exact_dir):
    """Regression: a snapshot taken mid-retrain deep-copied the service-bound executor (and its
    locks), which raised and stopped the applier thread. Now the retrain's steps are explicit:
    prepare, train (the applier may snapshot meanwhile), commit."""
    from unlearnkit.service.exact import ExactServedModel

    model = ExactServedModel(exact_dir)
    part = model.ensemble.partition
    model.apply_deletions([part.members(0, 0)[0], part.members(0, 1)[0]])
    assert model.pending_retrains() == [0]
    clones = []

    job = model.prepare_retrain(0)
    assert job.unit == 0 and job.train is not None
    pickle.dumps((job.train, job.inputs))  # what goes to the retrain child process
    start = time.perf_counter()
    clones.append(model.clone())  # what the applier does for a snapshot meanwhile
    weights = job.train(job.inputs)
    ticket = job.finish(weights, time.perf_counter() - start)
    model.commit_retrain(ticket)
    assert len(clones) == 1 and clones[0].pending_retrains() == [0]
    assert model.pending_retrains() == [] and model.version == 2
    x = torch.zeros(2, 1, 8, 8)
    assert not torch.equal(clones[0].predict_logits(x), model.predict_logits(x))


def test_exact_mode_also_serves_sisa_and_refuses_other_dirs(tmp_path, digits_small):
    from service_helpers import start_service

    from unlearnkit.exact import SISAConfig, SISAEnsemble
    from unlearnkit.service.auth import Principal
    from unlearnkit.training import TrainConfig

    _, train = digits_small
    cfg = SISAConfig(
        num_shards=2, num_slices=2, lora_rank=2, train=TrainConfig(epochs=1, lr=0.02, batch_size=32)
    )
    SISAEnsemble.train(train, cfg, num_classes=10).save(tmp_path / "sisa")
    service = start_service(tmp_path / "sisa", background_retrain=False)
    try:
        victim = service.model.ensemble.partition.members(0, 0)[0]  # slice 0: shard dies
        who = Principal(name="ops", scopes=frozenset({"admin"}))
        event, _ = service.submit_deletion(who, [victim], "k")
        assert service.ledger.get(event.request_id).status == "applied"
        # the eager SISA policy is overridden: the service decides when to retrain
        assert service.model.pending_retrains() == [0] and service.model.version == 1
    finally:
        service.close()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnkitError, match="holds no readable ensemble"):
        start_service(tmp_path / "empty")


def test_openapi_lists_the_endpoints(serve, exact_dir):
    with serve(exact_dir) as client:
        spec = client.get("/openapi.json").json()
        # the documentation pages work offline: every script and stylesheet they load is
        # served by this server, none comes from another host
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
            assert assets and all(a.startswith("/") for a in assets), assets
            for asset in assets:
                assert client.get(asset).status_code == 200, asset
    assert {
        "/v1/predict",
        "/v1/deletions",
        "/v1/deletions/{request_id}",
        "/v1/model",
        "/healthz",
        "/metrics",
    } <= set(spec["paths"])
