"""TLS: the real uvicorn server on 127.0.0.1 with a certificate issued by a throwaway CA
(trustme); a client that trusts that CA gets HTTPS answers, one that does not is refused."""

from __future__ import annotations

import ssl

import httpx
import pytest
from service_helpers import PREDICT, auth, running_server, start_service

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.app import create_app
from unlearnkit.service.server import check_tls

trustme = pytest.importorskip("trustme")


@pytest.fixture
def certs(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    return certfile, keyfile, trusted


def test_https_with_a_self_signed_ca(exact_dir, tokens, certs):
    certfile, keyfile, trusted = certs
    service = start_service(exact_dir, background_retrain=False)
    app = create_app(service, tokens)
    try:
        with running_server(app, ssl_certfile=certfile, ssl_keyfile=keyfile) as url:
            assert url.startswith("https://127.0.0.1:")
            with httpx.Client(base_url=url, verify=trusted, timeout=10) as client:
                health = client.get("/healthz")
                model = client.get("/v1/model", headers=auth(PREDICT))
            with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as untrusting:
                untrusting.get(f"{url}/healthz")  # the system store does not know this CA
            plain = url.replace("https://", "http://")
            with pytest.raises(httpx.HTTPError), httpx.Client(timeout=10) as cleartext:
                cleartext.get(f"{plain}/healthz")  # no cleartext on the TLS port
    finally:
        service.close()
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert model.status_code == 200 and model.json()["live_shards"]


def test_tls_settings_are_checked_at_start_up(tmp_path, certs):
    certfile, keyfile, _ = certs
    with pytest.raises(UnlearnkitError, match="both --ssl-certfile and --ssl-keyfile"):
        check_tls(certfile, None)
    with pytest.raises(UnlearnkitError, match="no such file"):
        check_tls(certfile, tmp_path / "missing.pem")
    with pytest.raises(UnlearnkitError, match="not a usable certificate"):
        check_tls(keyfile, keyfile)
    check_tls(certfile, keyfile)
    check_tls(None, None)
