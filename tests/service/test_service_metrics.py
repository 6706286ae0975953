"""/metrics comes from prometheus_client (parsed here with its own parser), behind the admin
token on the API port, and optionally without a token on a separate listener."""

from __future__ import annotations

import httpx
from service_helpers import ADMIN, PREDICT, auth, parse_metrics

from unlearnkit.service.metrics import serve_metrics, service_metrics

NAMES = {
    "unlearnkit_http_requests": "counter",
    "unlearnkit_http_request_seconds": "histogram",
    "unlearnkit_deletions_accepted": "counter",
    "unlearnkit_deletions_applied": "counter",
    "unlearnkit_deletions_failed": "counter",
    "unlearnkit_samples_deleted": "counter",
    "unlearnkit_retrains": "counter",
    "unlearnkit_snapshots": "counter",
    "unlearnkit_model_version": "gauge",
    "unlearnkit_slow_requests": "counter",
    "unlearnkit_live_shards": "gauge",
    "unlearnkit_rate_limited": "counter",
    "unlearnkit_ledger_write_errors": "counter",
}


def test_every_family_is_listed_with_its_type_before_first_use():
    _, types = parse_metrics(service_metrics().render())
    created = {name for name in types if name.endswith("_created")}  # the client's timestamps
    assert {name: kind for name, kind in types.items() if name not in created} == NAMES
    assert created <= {f"{n}_created" for n, kind in NAMES.items() if kind == "counter"}


def test_each_service_has_its_own_registry():
    a, b = service_metrics(), service_metrics()
    a.inc("unlearnkit_retrains_total")
    assert parse_metrics(a.render())[0]["unlearnkit_retrains_total", ()] == 1
    assert parse_metrics(b.render())[0]["unlearnkit_retrains_total", ()] == 0


def test_rate_limited_requests_are_counted(serve, exact_dir):
    with serve(exact_dir, background_retrain=False, rate_limit=0.01, rate_burst=1) as client:
        codes = [client.get("/v1/model", headers=auth(PREDICT)).status_code for _ in range(3)]
        values, _ = parse_metrics(client.get("/metrics", headers=auth(ADMIN)).text)
    assert codes == [200, 429, 429]
    assert values["unlearnkit_rate_limited_total", ()] == 2
    limited = (("method", "GET"), ("route", "/v1/model"), ("status", "429"))
    assert values["unlearnkit_http_requests_total", limited] == 2


def test_separate_metrics_listener_needs_no_token(serve, exact_dir):
    with serve(exact_dir, background_retrain=False) as client:
        assert client.get("/v1/model", headers=auth(PREDICT)).status_code == 200
        listener = serve_metrics(client.service.metrics, "127.0.0.1", 0)
        try:
            r = httpx.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=10)
        finally:
            listener.close()
        api = client.get("/metrics")  # the API port still wants the admin token
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values, types = parse_metrics(r.text)
    assert types["unlearnkit_model_version"] == "gauge"
    ok = (("method", "GET"), ("route", "/v1/model"), ("status", "200"))
    assert values["unlearnkit_http_requests_total", ok] == 1
    assert values["unlearnkit_live_shards", ()] == 3
    assert api.status_code == 401
