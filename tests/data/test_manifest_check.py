"""The manifest check of a reopened image folder is a stat per file (issue 25): a changed size
or label is named, a moved mtime gets that one file re-read and hashed, an unchanged folder is
not read at all, and ``--verify-content`` (the deep check) hashes every file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from image_folders import write_image_folder
from typer.testing import CliRunner

from unlearnkit.data import load_dataset
from unlearnkit.data.imagefolder import check_folder
from unlearnkit.errors import ConflictError

FILE = "c1/004.jpg"


@pytest.fixture
def folder(tmp_path) -> tuple[Path, object]:
    root = write_image_folder(tmp_path / "imgs", per_class=8, size=10)
    return root, load_dataset("imagefolder", str(root), image_size=8).manifest


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files read (``Path.read_bytes``) from here on."""
    seen: list[str] = []
    original = Path.read_bytes

    def counted(self: Path) -> bytes:
        seen.append(self.name if self.suffix == ".jpg" else str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counted)
    return seen


def _same_size_edit(path: Path) -> None:
    """Other bytes, same length (the last byte flipped)."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_unchanged_folder_is_checked_and_reopened_without_reading_a_file(folder, reads):
    root, manifest = folder
    check_folder(root, manifest)
    again = load_dataset("imagefolder", str(root), image_size=8, known=manifest)
    assert reads == []
    fresh = load_dataset("imagefolder", str(root), image_size=8)
    assert again.manifest == fresh.manifest and again.fingerprint == fresh.fingerprint
    assert again.train.ids.tolist() == fresh.train.ids.tolist()


def test_a_file_rewritten_with_another_size_is_named(folder):
    root, manifest = folder
    path = root / FILE
    path.write_bytes(path.read_bytes() + b"\0extra")
    with pytest.raises(ConflictError, match=r"c1/004\.jpg changed since training"):
        check_folder(root, manifest)


def test_a_touched_file_is_re_read_and_an_edit_behind_a_new_mtime_is_named(folder, reads):
    root, manifest = folder
    path = root / FILE
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touch only
    check_folder(root, manifest)  # same bytes: the same data (a copy without its times)
    assert reads == ["004.jpg"]  # only the touched file was read
    _same_size_edit(path)
    assert path.stat().st_size == stat.st_size
    with pytest.raises(ConflictError, match=r"c1/004\.jpg changed since training"):
        check_folder(root, manifest)


def test_the_deep_check_finds_an_edit_that_kept_size_and_mtime(folder, reads):
    root, manifest = folder
    path = root / FILE
    stat = path.stat()
    _same_size_edit(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the recorded mtime restored
    reads.clear()
    check_folder(root, manifest)  # what a stat cannot see
    assert reads == []
    with pytest.raises(ConflictError, match=r"c1/004\.jpg changed since training"):
        check_folder(root, manifest, verify_content=True)
    assert len(reads) > 1  # every file up to the edited one was hashed


def test_evaluate_verify_content_flag_is_the_deep_check(tmp_path):
    from unlearnkit.cli import app
    from unlearnkit.config import ExperimentConfig
    from unlearnkit.recipe import load_bundle, save_trained, train_original
    from unlearnkit.training import TrainConfig

    root = write_image_folder(tmp_path / "imgs", per_class=8, size=10)
    cfg = ExperimentConfig(model="smallcnn", peft="bn", pretrain=False, dataset="imagefolder",
                           data_dir=str(root), dataset_options={"image_size": 8},
                           model_options={"width": 4}, train=TrainConfig(epochs=1))  # fmt: skip
    bundle = load_bundle(cfg)
    save_trained(tmp_path / "model", train_original(cfg, bundle, 0), cfg, bundle)
    path = root / FILE
    stat = path.stat()
    _same_size_edit(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    args = ["evaluate", "--from", str(tmp_path / "model"), "--threads", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0  # the routine check: a stat per file
    res = CliRunner().invoke(app, [*args, "--verify-content"])
    assert res.exit_code == 2 and "004.jpg changed since training" in res.output
    res = CliRunner().invoke(app, ["unlearn", "--method", "finetune", "--verify-content"])
    assert res.exit_code == 2 and "give --from" in res.output
