"""ImageFolder: --image-size (shorter side + centre crop, saved with the model) and bad input
(unreadable or truncated files, --skip-bad-images, empty class folders, a single class)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_subprocess import cli
from PIL import Image

from unlearnkit.data import load_dataset
from unlearnkit.errors import UnlearnkitError

TRAIN = ["--no-pretrain", "--epochs", "1", "--model", "smallcnn", "--peft", "full"]


def make_folder(root: Path, classes=("cat", "dog"), n: int = 6, size=(20, 40)) -> Path:
    """Wide RGB images (h x w = 20 x 40): a class colour in the centre square, red borders."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = np.zeros((*size, 3), dtype=np.uint8)
            img[..., 0] = 255
            left = (size[1] - size[0]) // 2
            img[:, left : left + size[0]] = [0, 60 + 120 * k, int(rng.integers(0, 50))]
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    return root


def test_shorter_side_is_resized_and_the_centre_cropped(tmp_path):
    root = make_folder(tmp_path / "data")
    bundle = load_dataset("imagefolder", str(root), image_size=10)
    prep = bundle.preprocessing
    assert (prep.size, prep.resize, prep.channels) == (10, 10, 3)
    pixels = prep.to_uint8(bundle.train.x)
    assert pixels.shape[1:] == (3, 10, 10)
    # the red borders were cropped, not squashed in (only the antialiasing filter's edge)
    assert int(pixels[:, 0, :, 1:-1].max()) == 0 and int(pixels[:, 0].max()) < 64
    assert prep.stats.startswith("fixed constants for imagefolder")


def test_train_image_size_flag_is_saved_with_the_model(tmp_path):
    root = make_folder(tmp_path / "data")
    out = tmp_path / "model"
    proc = cli(
        "train", "--dataset", "imagefolder", "--data-dir", str(root), "--image-size", "12",
        "--out", str(out), *TRAIN,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "model.safetensors.json").read_text())
    meta = meta.get("metadata", meta)
    record = meta["preprocessing"]
    record = json.loads(record) if isinstance(record, str) else record
    assert (record["size"], record["resize"], record["channels"]) == (12, 12, 3)
    # a data set without the option refuses it by name, before anything is written
    bad = cli("train", "--image-size", "12", "--out", str(tmp_path / "x"), *TRAIN)
    assert bad.returncode == 2 and "no option 'image_size'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "x").exists()


def test_a_truncated_image_is_one_line_naming_it_or_skipped_with_a_count(tmp_path):
    root = make_folder(tmp_path / "data")
    broken = root / "dog" / "03.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated mid-stream
    with pytest.raises(UnlearnkitError, match=r"cannot decode .*03\.png"):
        load_dataset("imagefolder", str(root))
    out = tmp_path / "model"
    proc = cli("train", "--dataset", "imagefolder", "--data-dir", str(root), "--out", str(out),
               *TRAIN)  # fmt: skip
    assert proc.returncode == 2 and "03.png" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    proc = cli("train", "--dataset", "imagefolder", "--data-dir", str(root), "--out", str(out),
               "--skip-bad-images", *TRAIN)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 unreadable image(s)" in proc.stderr
    with pytest.warns(UserWarning, match="skipped 1"):
        bundle = load_dataset("imagefolder", str(root), skip_bad_images=True)
    assert len(bundle.train) + len(bundle.test) == 11 and bundle.skipped == (str(broken),)


def test_folders_that_cannot_make_a_classifier(tmp_path):
    one = make_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(UnlearnkitError, match="one class folder"):
        load_dataset("imagefolder", str(one))
    empty = make_folder(tmp_path / "empty")
    (empty / "eel").mkdir()
    with pytest.raises(UnlearnkitError, match=r"class folder .*eel holds no images"):
        load_dataset("imagefolder", str(empty))
    with pytest.raises(UnlearnkitError, match="no class sub-folders"):
        (tmp_path / "none").mkdir()
        load_dataset("imagefolder", str(tmp_path / "none"))


def test_ids_follow_sorted_paths(tmp_path):
    """The same files give the same ids whatever order the file system lists them in."""
    root = make_folder(tmp_path / "data", n=4)
    a = load_dataset("imagefolder", str(root), image_size=8, test_fraction=0.25)
    b = load_dataset("imagefolder", str(root), image_size=8, test_fraction=0.25)
    assert torch.equal(a.train.x, b.train.x) and a.fingerprint == b.fingerprint


def test_s3t_train_image_size_flag_is_saved_with_the_ensemble(tmp_path):
    from unlearnkit.exact import S3TEnsemble

    root = make_folder(tmp_path / "data", n=8)
    out = tmp_path / "s3t"
    proc = cli(
        "s3t", "train", "--dataset", "imagefolder", "--data-dir", str(root), "--image-size",
        "12", "--out", str(out), "--no-pretrain", "--shards", "2", "--slices", "1",
        "--epochs", "1", "--rank", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = S3TEnsemble.load(out).meta
    assert meta["dataset_options"] == {"image_size": 12}
    assert meta["preprocessing"]["size"] == 12 and meta["preprocessing"]["resize"] == 12


def test_manifest_names_every_file_and_deletion_by_path(tmp_path):
    from unlearnkit.data.forget import select_forget

    root = make_folder(tmp_path / "data", n=5)
    bundle = load_dataset("imagefolder", str(root), image_size=8, public_fraction=0.3)
    rows = bundle.manifest.entries
    assert [e.path for e in rows] == sorted(e.path for e in rows) and len(rows) == 10
    in_d = {e.id: e.path for e in rows if e.part == "train"}
    assert sorted(in_d) == bundle.train.ids.tolist()
    assert {e.part for e in rows} == {"train", "public", "test"}
    assert bundle.train.paths == tuple(in_d[i] for i in bundle.train.ids.tolist())
    victim = in_d[int(bundle.train.ids[1])]
    listing = tmp_path / "forget.txt"
    listing.write_text(f"{victim}\n")
    assert select_forget(bundle.train, f"paths:{listing}").tolist() == [int(bundle.train.ids[1])]
    assert bundle.manifest.ids_of([victim]) == [int(bundle.train.ids[1])]
    listing.write_text("cat/nope.png\n")
    with pytest.raises(UnlearnkitError, match=r"cat/nope\.png is not in the training set D"):
        select_forget(bundle.train, f"paths:{listing}")
    with pytest.raises(UnlearnkitError, match="not read from files"):
        select_forget(load_dataset("digits").train, f"paths:{listing}")


def test_a_folder_changed_since_training_is_one_line_naming_the_file(tmp_path):
    import shutil

    root = make_folder(tmp_path / "data")
    out = tmp_path / "model"
    proc = cli("train", "--dataset", "imagefolder", "--data-dir", str(root), "--out", str(out),
               "--image-size", "8", *TRAIN)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.csv").read_text().startswith("id,part,path,label,size,mtime_ns")
    # a copy of the folder (new mtimes, same bytes) is the same data
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    ok = cli("evaluate", "--from", str(out), "--data-dir", str(copy))
    assert ok.returncode == 0, ok.stderr

    def refused(expected: str) -> None:
        proc = cli("evaluate", "--from", str(out), "--data-dir", str(copy))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr

    Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8)).save(copy / "cat" / "99.png")
    refused("99.png was added since training")
    (copy / "cat" / "99.png").unlink()
    (copy / "dog" / "02.png").unlink()
    refused("02.png was removed since training")
    shutil.copy(root / "dog" / "02.png", copy / "dog" / "02.png")
    shutil.copy(root / "cat" / "01.png", copy / "dog" / "03.png")  # other bytes, same name
    refused("03.png changed since training")
