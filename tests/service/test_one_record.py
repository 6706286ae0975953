"""One record of deletions per model directory (the service's ledger, read and appended by the
CLI under one writer lock), and erasure: after deletions through the CLI and the service, no
file in the model directory or its snapshots holds anything trained on a deleted sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from cli_subprocess import cli as run_cli
from safetensors import safe_open
from service_helpers import start_service, wait_for
from typer.testing import CliRunner

from unlearnkit.cli.exact import mount
from unlearnkit.exact import load_ensemble
from unlearnkit.exact.recipe import ensemble_data
from unlearnkit.service.auth import Principal

FAST = [
    "--no-pretrain", "--shards", "2", "--slices", "2", "--sequences", "2", "--epochs", "1",
    "--rank", "2", "--threads", "1", "--retrain-policy", "manual",
]  # fmt: skip
WHO = Principal(name="alice", scopes=frozenset({"admin"}))


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)
    mount(app)
    return app


@pytest.fixture
def trained(app, tmp_path) -> Path:
    out = tmp_path / "ens"
    res = CliRunner().invoke(app, ["s3t", "train", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    return out


def _invoke(app, *args: str):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def _tensor_files(root: Path) -> dict[Path, dict[str, torch.Tensor]]:
    out = {}
    for path in sorted(root.rglob("*.safetensors")):
        with safe_open(str(path), "pt") as fh:
            out[path] = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    return out


def _victims(directory: Path) -> tuple[int, int]:
    """A sample of shard 0's first slice and one of shard 1's second slice."""
    part = load_ensemble(directory).partition
    return part.members(0, 0)[0], part.members(1, 1)[0]


def test_cli_reads_and_appends_the_service_ledger(app, trained: Path) -> None:
    by_service, by_cli = _victims(trained)
    service = start_service(trained, background_retrain=False)
    try:
        event, _ = service.submit_deletion(WHO, [by_service], "k-1")
        assert event.status == "applied"
    finally:
        service.close()
    status = json.loads(_invoke(app, "s3t", "status", "--from", str(trained)).stdout)
    assert status["version"] == 1 and status["deleted_samples"] == 1  # the service's deletion
    assert status["ledger"] == {"events": 1, "applied_seq": 1}
    again = _invoke(app, "s3t", "delete", "--from", str(trained), "--ids", str(by_service))
    line = json.loads(again.stdout.strip())
    assert line == {"sample_id": by_service, "already_deleted": True,
                    "request_id": event.request_id, "client": "alice"}  # fmt: skip
    assert len(again.stderr.strip().splitlines()) == 1 and "already deleted" in again.stderr
    fresh = _invoke(app, "s3t", "delete", "--from", str(trained), "--ids", str(by_cli))
    assert json.loads(fresh.stdout.splitlines()[0])["version"] == 2
    # the service, started again, finds the CLI's deletion in its own ledger and snapshot
    service = start_service(trained, background_retrain=False)
    try:
        assert service.model.deleted_ids() == {by_service, by_cli}
        assert service.model.version == 2 and service.replayed == 0
        listed = service.ledger.page()
        assert [(e.client, e.payload["sample_ids"]) for e in listed] == [
            ("alice", [by_service]),
            ("cli", [by_cli]),
        ]
    finally:
        service.close()
    # the record belongs to this model: training another one over it is refused
    res = CliRunner().invoke(app, ["s3t", "train", "--out", str(trained), "--overwrite", *FAST])
    assert res.exit_code == 2 and "deletion record" in res.output


@pytest.mark.slow
def test_cli_refused_while_a_service_writes_but_reads(trained: Path) -> None:
    """Two processes: the in-process service holds the writer lock; the CLI (a subprocess)
    may read the record but not append to it."""
    victim, other = _victims(trained)
    service = start_service(trained, background_retrain=False)
    try:
        service.submit_deletion(WHO, [victim], None)
        shown = run_cli("s3t", "status", "--from", str(trained))
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["deleted_samples"] == 1
        refused = run_cli("s3t", "delete", "--from", str(trained), "--ids", str(other))
        assert refused.returncode == 2
        assert refused.stderr.strip().count("\n") == 0 and "serve" in refused.stderr
        repeat = run_cli("s3t", "delete", "--from", str(trained), "--ids", str(victim))
        assert repeat.returncode == 0 and "already deleted" in repeat.stderr
    finally:
        service.close()
    assert load_ensemble(trained).partition.deleted == {victim}


def test_nothing_derived_from_deleted_samples_stays(app, trained: Path) -> None:
    by_service, by_cli = _victims(trained)
    train = ensemble_data(load_ensemble(trained).meta).train
    # no pixel of any training sample is in any file, from the start (ids + a reference)
    before = _tensor_files(trained)
    assert not any("x" in t for t in before.values())
    service = start_service(trained, background_retrain=False, snapshot_every=1)
    try:
        service.submit_deletion(WHO, [by_service], None)
    finally:
        service.close()
    _invoke(app, "s3t", "delete", "--from", str(trained), "--ids", str(by_cli))

    ens = load_ensemble(trained)
    assert ens.partition.deleted == {by_service, by_cli}
    off = [name for name in ens.blocks.all_names() if name not in ens.switched_on_names()]
    assert off, "the deletions switched blocks off"
    off_keys = {k for name in off for k in ens.stack.block_parameter_names(name)}
    files = _tensor_files(trained)
    assert any(p.parent.name.startswith("snap-") for p in files)  # snapshots scanned too
    deleted_rows = train.select_ids([by_service, by_cli]).x
    pixels = [deleted_rows[i].contiguous().numpy().tobytes() for i in range(2)]
    for path, tensors in files.items():
        assert not off_keys & set(tensors), f"{path} keeps a switched-off block"
        raw = path.read_bytes()
        assert not any(p in raw for p in pixels), f"{path} holds a deleted sample's pixels"
    for path in trained.rglob("*"):  # every file, not only tensors
        if path.is_file():
            raw = path.read_bytes()
            assert not any(p in raw for p in pixels), f"{path} holds a deleted sample's pixels"
    # every block still written trained on live data only: none of them lies on a deleted path
    on = set(ens.switched_on_names())
    for i in (by_service, by_cli):
        shard, slc = ens.partition.owner[i]
        for b, order in enumerate(ens.sequences):
            for k in range(order.index(slc), len(order)):
                assert f"s{shard}_q{b}_k{k}" not in on


def test_switched_off_blocks_come_back_only_by_retraining(app, trained: Path) -> None:
    victim, _ = _victims(trained)
    _invoke(app, "s3t", "delete", "--from", str(trained), "--ids", str(victim))
    _invoke(app, "s3t", "retrain", "--from", str(trained), "--pending", "--threads", "1")
    ens = load_ensemble(trained)
    assert ens.alive.all() and ens.version == 2
    names = {k for t in _tensor_files(trained).values() for k in t}
    assert {k for n in ens.blocks.all_names() for k in ens.stack.block_parameter_names(n)} <= names


def test_a_changed_data_set_is_refused_in_one_line(app, trained: Path) -> None:
    pointer = (trained / "CURRENT").read_text().strip()
    record = json.loads((trained / pointer).read_text())
    record["meta"]["train_fingerprint"] = "0" * 16
    (trained / pointer).write_text(json.dumps(record))
    res = CliRunner().invoke(app, ["s3t", "status", "--from", str(trained)])
    assert res.exit_code == 2
    assert "fingerprint mismatch" in res.output and len(res.output.strip().splitlines()) == 1


def test_approximate_snapshots_drop_the_full_solution(ntk_dir: Path) -> None:
    """After a deletion in (linearized) approximate mode no file keeps w_D - w0, and the sums
    kept are those of the remaining data (equal to a fresh precompute on D_r)."""
    from unlearnkit.ntk.incremental import precompute_state
    from unlearnkit.ntk.state import NTKState
    from unlearnkit.recipe import open_trained
    from unlearnkit.service.approximate import STATE_FILE

    service = start_service(ntk_dir, mode="approximate")
    try:
        event, _ = service.submit_deletion(WHO, [0, 5], None)
        wait_for(lambda: service.ledger.get(event.request_id).status == "applied")
    finally:
        service.close()
    states = sorted(ntk_dir.rglob(STATE_FILE))
    assert len(states) == 2  # the rewritten base and the snapshot
    for path in states:
        with safe_open(str(path), "pt") as fh:
            assert "solution_full" not in set(fh.keys()), f"{path} keeps w_D - w0"
    opened = open_trained(ntk_dir)
    t = opened.trained
    saved = NTKState.load(ntk_dir / STATE_FILE)
    assert sorted(saved.deleted_ids.tolist()) == [0, 5]
    fresh = precompute_state(
        t.model, t.trainable, t.initial_state, opened.bundle.train.drop_ids([0, 5]),
        opened.bundle.num_classes, saved.lam,
        data_fingerprint=opened.bundle.train.fingerprint(),
    )  # fmt: skip
    scale = float(fresh.gram.abs().max())
    assert torch.allclose(saved.gram, fresh.gram, atol=1e-8 * scale)
    assert torch.allclose(saved.rhs, fresh.rhs, atol=1e-8 * float(fresh.rhs.abs().max()))
