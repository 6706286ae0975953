"""The real `unlearnkit serve` process with the public-endpoint flags: HTTPS (--ssl-certfile /
--ssl-keyfile), a hashed token file followed for changes and on SIGHUP, --rate-limit, and an
unauthenticated --metrics-port listener; SIGINT ends it cleanly."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from service_helpers import ADMIN, PREDICT, auth, parse_metrics
from test_service_kill9 import free_port

from unlearnkit.service.auth import token_digest

trustme = pytest.importorskip("trustme")


def tokens_file(path, entries) -> None:
    path.write_text(json.dumps({"tokens": entries}))


@pytest.mark.slow
def test_serve_with_tls_metrics_port_rate_limit_and_token_reload(exact_dir, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    token_path = tmp_path / "tokens.json"
    ops = {"name": "ops", "token": token_digest(ADMIN), "scopes": ["admin"]}
    tokens_file(token_path, [ops, {"name": "app", "token": PREDICT, "scopes": ["predict"]}])
    port, metrics_port = free_port(), free_port()
    cmd = [
        *(sys.executable, "-m", "unlearnkit", "serve", "--from", str(exact_dir)),
        *("--port", str(port), "--tokens", str(token_path), "--no-background-retrain"),
        *("--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)),
        *("--metrics-port", str(metrics_port), "--rate-limit", "0.001", "--rate-burst", "3"),
    ]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, verify=trusted, timeout=5) as client:
            end = time.monotonic() + 120
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    assert time.monotonic() < end, "server did not start"
                    time.sleep(0.2)
            first = client.get("/v1/model", headers=auth(PREDICT))
            tokens_file(token_path, [ops])  # app revoked
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            revoked = client.get("/v1/model", headers=auth(PREDICT))
            limited = [client.get("/v1/model", headers=auth(ADMIN)).status_code for _ in range(4)]
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        log.close()
    assert first.status_code == 200
    assert revoked.status_code == 401
    assert limited == [200, 200, 200, 429]
    assert scraped.status_code == 200
    values, _ = parse_metrics(scraped.text)
    assert values["unlearnkit_rate_limited_total", ()] == 1
    text = (tmp_path / "serve.log").read_text()
    assert code in (0, 130) and "Traceback" not in text, text  # uvicorn re-raises SIGINT
