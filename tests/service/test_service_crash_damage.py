"""Issue 30, finding 1: acknowledged deletions must never be silently undone after a crash.

A real ``unlearnkit serve`` acknowledges deletions (202) and is killed with SIGKILL, leaving the
events in the SQLite WAL only (no snapshot after the first). Its files are then damaged the
ways a crash, a careless backup or a rollback damage them: the WAL removed, halved or
overwritten with 4 KiB of random bytes, the ledger removed, its main file truncated, the mark
removed, the ledger replaced by an older copy. Each restart must refuse (exit code 2, one line,
nothing written); the undamaged files must restart with every acknowledged deletion.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat

import httpx
import pytest
import typer
from service_helpers import ADMIN, auth, free_port, launch, start_service
from typer.testing import CliRunner

from unlearnkit.exact import S3TEnsemble

ACKED = 12


def _damage_wal_removed(svc):
    (svc / "ledger.sqlite3-wal").unlink()


def _damage_wal_halved(svc):
    wal = svc / "ledger.sqlite3-wal"
    os.truncate(wal, wal.stat().st_size // 2)


def _damage_wal_random(svc):
    wal = svc / "ledger.sqlite3-wal"
    with wal.open("r+b") as fh:
        fh.seek(wal.stat().st_size // 2)
        fh.write(os.urandom(4096))


def _damage_ledger_removed(svc):
    for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
        (svc / name).unlink(missing_ok=True)


def _damage_main_truncated(svc):
    os.truncate(svc / "ledger.sqlite3", 0)


def _damage_mark_removed(svc):
    (svc / "ledger.mark").unlink()


DAMAGES = {
    "wal removed (a backup of the main file only)": (_damage_wal_removed, "ends at event"),
    "wal halved": (_damage_wal_halved, "ends at event"),
    "4 KiB of random bytes in the wal": (_damage_wal_random, "ends at event"),
    "ledger removed": (_damage_ledger_removed, "is missing"),
    "main file truncated": (_damage_main_truncated, "ledger"),
    "mark removed": (_damage_mark_removed, "mark .* is missing"),
}


def tree_state(root) -> dict[str, tuple[str, int]]:
    """Every file and directory under ``root``: content hash and mode."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            mode = stat.S_IMODE(os.stat(path).st_mode)
            digest = "dir"
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(path, root)] = (digest, mode)
    return out


def serve_cli() -> typer.Typer:
    from unlearnkit.cli.serve import mount

    app = typer.Typer()
    app.callback()(lambda: None)
    mount(app)
    return app


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, s3t_base):
    """A model directory whose server acknowledged ACKED deletions and was killed -9."""
    root = tmp_path_factory.mktemp("crashed")
    model = shutil.copytree(s3t_base, root / "s3t")
    ens = S3TEnsemble.load(model)
    ids = (ens.partition.members(0, 1) + ens.partition.members(1, 1))[:ACKED]
    token_file = root / "tokens.json"
    token_file.write_text(
        json.dumps({"tokens": [{"name": "ops", "token": ADMIN, "scopes": ["admin"]}]})
    )
    port = free_port()
    with (root / "server.log").open("wb") as log:
        proc = launch(
            model, token_file, port, log, "--snapshot-every", "100000", "--no-background-retrain"
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for i in ids:
                    r = client.post(
                        "/v1/deletions", json={"sample_ids": [i]}, headers=auth(ADMIN, f"k{i}")
                    )
                    assert r.status_code == 202, r.text
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    svc = model / "service"
    served = json.loads((svc / "SERVED.json").read_text())
    assert served["ledger_seq"] == 0  # every acknowledged event lives in the ledger only
    assert (svc / "ledger.sqlite3-wal").stat().st_size > 0
    return model, ids


def test_undamaged_crash_restarts_with_every_acknowledged_deletion(crashed, tmp_path):
    model, ids = crashed
    copy = shutil.copytree(model, tmp_path / "m")
    service = start_service(copy, background_retrain=False)
    try:
        assert service.model.deleted_ids() == set(ids) and service.replayed == ACKED
    finally:
        service.close()


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_ledger_after_kill_9_is_refused_and_nothing_written(
    crashed, tmp_path, damage, monkeypatch
):
    model, _ = crashed
    copy = shutil.copytree(model, tmp_path / "m")
    harm, words = DAMAGES[damage]
    harm(copy / "service")
    before = tree_state(copy)
    monkeypatch.setenv(
        "UNLEARNKIT_TOKENS",
        json.dumps({"tokens": [{"name": "ops", "token": ADMIN, "scopes": ["admin"]}]}),
    )
    res = CliRunner().invoke(serve_cli(), ["serve", "--from", str(copy), "--port", "1"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "refusing to start" in res.output
    assert re.search(words, res.output), res.output
    assert tree_state(copy) == before  # a refused start writes nothing


def test_rollback_to_an_older_copy_or_altered_event_is_refused(crashed, tmp_path):
    """A ledger restored from an older copy (fewer events than acknowledged) and an event
    edited in place (its chain link no longer matches) are refused too."""
    import sqlite3

    from unlearnkit.errors import UnlearnkitError

    model, _ = crashed
    copy = shutil.copytree(model, tmp_path / "m")
    svc = copy / "service"
    db = sqlite3.connect(svc / "ledger.sqlite3")
    db.execute("UPDATE events SET payload = ? WHERE seq = 3", (json.dumps({"sample_ids": [1]}),))
    db.commit()
    db.close()
    with pytest.raises(UnlearnkitError, match="event 3 does not match its hash chain"):
        start_service(copy)
    older = shutil.copytree(model, tmp_path / "o")
    db = sqlite3.connect(older / "service" / "ledger.sqlite3")
    db.execute("DELETE FROM events WHERE seq > 5")
    db.commit()
    db.close()
    with pytest.raises(UnlearnkitError, match="ends at event 5 but acknowledged"):
        start_service(older)
    # the explicit override: accept the older ledger, the mark moves back to its end
    service = start_service(older, background_retrain=False, reset_ledger_mark=True)
    deleted = service.model.deleted_ids()
    service.close()
    again = start_service(older, background_retrain=False)  # and the next start is normal
    again.close()
    assert len(deleted) == 5


def test_service_files_are_owner_only_or_group_readable(crashed, tmp_path):
    """Finding 5: the ledger (client names, keys, ids) and every file the service writes are
    0600 in 0700 directories; ``group_readable`` gives 0640 / 0750."""
    model, _ = crashed
    for group, (fmode, dmode) in ((False, (0o600, 0o700)), (True, (0o640, 0o750))):
        copy = shutil.copytree(model, tmp_path / f"g{group}")
        shutil.rmtree(copy / "service")  # a fresh service directory
        service = start_service(copy, background_retrain=False, group_readable=group)
        service.close()
        modes = tree_state(copy / "service")
        assert {"ledger.sqlite3", "ledger.mark", "SERVED.json"} <= set(modes)
        for rel, (digest, mode) in modes.items():
            assert mode == (dmode if digest == "dir" else fmode), (rel, oct(mode))
        assert stat.S_IMODE((copy / "service").stat().st_mode) == dmode


def test_a_ledger_older_than_the_served_snapshot_is_refused(crashed, tmp_path):
    """Even with the mark overridden, a ledger that ends before the event the served snapshot
    reflects is refused: the snapshot holds deletions the ledger no longer records."""
    import sqlite3

    from unlearnkit.errors import UnlearnkitError

    model, _ = crashed
    copy = shutil.copytree(model, tmp_path / "m")
    start_service(copy, background_retrain=False).close()  # replays, snapshots at event 12
    assert json.loads((copy / "service" / "SERVED.json").read_text())["ledger_seq"] == ACKED
    db = sqlite3.connect(copy / "service" / "ledger.sqlite3")
    db.execute("DELETE FROM events WHERE seq > 5")
    db.commit()
    db.close()
    with pytest.raises(UnlearnkitError, match="ends at event 5 but the served model snapshot"):
        start_service(copy, background_retrain=False, reset_ledger_mark=True)
