"""Outputs get the permissions the user's umask asks for, not tempfile's private 0600 / 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from unlearnkit.atomic_files import atomic_write_text, process_umask
from unlearnkit.models.checkpoint import save_state
from unlearnkit.report import staged_run_dir


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_process_umask_reads_without_changing(umask) -> None:
    assert process_umask() == umask
    assert process_umask() == umask  # reading it twice did not reset it


def test_files_and_run_directories_follow_the_umask(tmp_path, umask) -> None:
    out = tmp_path / "run"
    with staged_run_dir(out) as staging:
        atomic_write_text(staging / "results.json", "{}")
        save_state(staging / "model.safetensors", {"w": torch.ones(2)}, {"kind": "test"})
    assert mode(out) == 0o777 & ~umask
    for name in ("results.json", "model.safetensors", "model.safetensors.json"):
        assert mode(out / name) == 0o666 & ~umask, name
