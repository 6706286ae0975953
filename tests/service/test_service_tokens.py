"""Tokens: kept only as SHA-256 digests (a file may hold ``sha256:`` digests), compared in
constant time, reloaded when the file changes or on SIGHUP; a removed token is refused at the
next request and a broken file keeps the tokens in force."""

from __future__ import annotations

import json
import os
import signal

import pytest
from fastapi.testclient import TestClient
from service_helpers import auth, start_service

from unlearnkit.errors import UnlearnkitError
from unlearnkit.service.app import create_app
from unlearnkit.service.auth import TokenStore, reload_on_sighup, token_digest

OPS, APP = "ops-secret-0000000001", "app-secret-0000000001"


def write_tokens(path, entries, keep_stat: os.stat_result | None = None) -> None:
    path.write_text(json.dumps({"tokens": entries}))
    if keep_stat is not None:  # hide the change from the mtime check (a SIGHUP must notice)
        os.utime(path, ns=(keep_stat.st_atime_ns, keep_stat.st_mtime_ns))
    else:  # a distinct mtime even on a coarse-grained clock
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def entry(name: str, token: str, scopes=("admin",)) -> dict:
    return {"name": name, "token": token, "scopes": list(scopes)}


def test_hashed_tokens_in_the_file_and_no_plain_token_kept(tmp_path):
    path = tmp_path / "tokens.json"
    write_tokens(path, [entry("ops", token_digest(OPS)), entry("app", APP, ["predict"])])
    store = TokenStore.from_sources(path)
    assert store.identify(OPS).name == "ops"
    assert store.identify(APP).name == "app"
    assert store.identify(token_digest(OPS)) is None  # the digest itself is no token
    assert store.identify(OPS[:-1] + "2") is None
    kept = repr(vars(store))
    assert OPS not in kept and APP not in kept


@pytest.mark.parametrize(
    "token", ["sha256:" + "a" * 63, "sha256:" + "A" * 64, "sha256:" + "g" * 64]
)
def test_a_malformed_digest_is_refused_naming_the_field(token):
    with pytest.raises(UnlearnkitError, match=r"tokens\.0\.token.*sha256"):
        TokenStore.parse(json.dumps({"tokens": [entry("a", token)]}), "tokens.json")


def test_plain_and_hashed_copies_of_one_secret_are_refused():
    text = json.dumps({"tokens": [entry("a", OPS), entry("b", token_digest(OPS))]})
    with pytest.raises(UnlearnkitError, match="same secret"):
        TokenStore.parse(text, "tokens.json")


def test_revoked_token_is_refused_at_the_next_request(tmp_path, exact_dir):
    path = tmp_path / "tokens.yaml"
    write_tokens(path, [entry("ops", OPS), entry("app", APP, ["predict"])])
    store = TokenStore.from_sources(path)
    service = start_service(exact_dir, background_retrain=False)
    try:
        with TestClient(create_app(service, store)) as client:
            assert client.get("/v1/model", headers=auth(APP)).status_code == 200
            write_tokens(path, [entry("ops", OPS)])  # app revoked
            revoked = client.get("/v1/model", headers=auth(APP))
            still = client.get("/v1/model", headers=auth(OPS))
            new_app = "app-secret-0000000002"
            write_tokens(path, [entry("ops", OPS), entry("app", token_digest(new_app))])
            rotated = client.get("/v1/model", headers=auth(new_app))
    finally:
        service.close()
    assert revoked.status_code == 401 and revoked.json()["error"]["message"] == "invalid token"
    assert still.status_code == 200 and rotated.status_code == 200
    assert store.reloads == 2


def test_a_broken_file_keeps_the_tokens_in_force(tmp_path, caplog):
    path = tmp_path / "tokens.yaml"
    write_tokens(path, [entry("ops", OPS)])
    store = TokenStore.from_sources(path)
    path.write_text('{"tokens": [{"name": "ops", "tok')  # half written
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    with caplog.at_level("ERROR", logger="unlearnkit.service"):
        assert store.identify(OPS).name == "ops"
    assert "previous tokens stay in force" in caplog.text
    path.unlink()
    assert store.identify(OPS).name == "ops" and not store.reload()
    write_tokens(path, [entry("app", APP)])
    assert store.identify(OPS) is None and store.identify(APP).name == "app"


def test_sighup_reloads_the_file(tmp_path):
    path = tmp_path / "tokens.yaml"
    write_tokens(path, [entry("ops", OPS), entry("app", APP)])
    store = TokenStore.from_sources(path)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert reload_on_sighup(store)
        write_tokens(path, [entry("ops", OPS), entry("apq", APP[::-1])], keep_stat=path.stat())
        assert store.identify(APP) is not None  # same size and mtime: not noticed yet
        os.kill(os.getpid(), signal.SIGHUP)
        assert store.identify(APP) is None and store.identify(APP[::-1]).name == "apq"
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not reload_on_sighup(TokenStore.parse(path.read_text(), "env"))  # no file to follow
