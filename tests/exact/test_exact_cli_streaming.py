"""``s3t|sisa`` over a folder of image files (issue 25): train and predict stream the files a
batch at a time (never one float tensor of a whole split), and ``--workers N`` decodes in N
DataLoader processes with the same results as ``--workers 0``."""

from __future__ import annotations

import json

import pytest
from image_folders import write_image_folder
from typer.testing import CliRunner

from unlearnkit.data.base import ArraySplit
from unlearnkit.data.samples import Samples

FAST = [
    "--no-pretrain", "--shards", "2", "--slices", "2", "--epochs", "1", "--rank", "4",
    "--threads", "1", "--image-size", "8", "--dataset", "imagefolder",
]  # fmt: skip


@pytest.fixture
def never_materialised(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self):
        raise AssertionError("a consumer materialised a whole split's inputs")

    monkeypatch.setattr(ArraySplit, "x", property(refuse))
    monkeypatch.setattr(Samples, "materialise", refuse)


def _run(cli, *args: str) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.mark.parametrize("scheme", ["s3t", "sisa"])
def test_train_and_predict_on_files_stream_and_workers_agree(
    cli, tmp_path, never_materialised, scheme
):
    data = write_image_folder(tmp_path / "imgs", per_class=10)
    runs = {}
    for workers in ("0", "2"):
        out = tmp_path / f"{scheme}-w{workers}"
        _run(cli, scheme, "train", "--out", str(out), "--data-dir", str(data), *FAST,
             "--workers", workers)  # fmt: skip
        lines, saved = [], []
        for split in ("train", "test"):
            csv = tmp_path / f"pred-{workers}-{split}.csv"
            args = ["predict", "--from", str(out), "--split", split, "--save", str(csv)]
            lines.append(json.loads(_run(cli, scheme, *args, "--workers", workers)))
            saved.append(csv.read_text())
        runs[workers] = (lines, saved)
    (plain, plain_csv), (forked, forked_csv) = runs["0"], runs["2"]
    assert [line["samples"] for line in plain] == [16, 4]  # 20 files: 16 train, 4 test
    assert plain == forked and plain_csv == forked_csv  # same accuracy, version, predictions
