"""``unlearn`` saves the unlearned model as a model directory that ``evaluate``, ``export`` and
another ``unlearn`` understand, with the method, the forget set and the lineage recorded."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.recipe import load_trained, open_trained

RUN = CliRunner()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def unlearned(tmp_path_factory, save_tiny_trained):
    root = tmp_path_factory.mktemp("flow")
    parent, out = root / "model", root / "out"
    save_tiny_trained(parent)
    res = RUN.invoke(
        app,
        [
            "unlearn", "--method", "finetune", "--from", str(parent), "--out", str(out),
            "--forget", "class:2", "--param", "epochs=1", "--threads", "1",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return parent, out


def test_unlearn_writes_a_model_directory_with_its_record(unlearned) -> None:
    parent, out = unlearned
    meta = json.loads((out / "model" / "model.safetensors.json").read_text())
    record = meta["unlearning"]
    assert record["method"] == "finetune" and record["params"] == {"epochs": 1}
    assert record["forget"] == "class:2"
    opened = open_trained(parent)
    class2 = opened.bundle.train.ids[opened.bundle.train.y == 2].tolist()
    assert record["forget_ids"] == class2 and record["n_forget"] == len(class2)
    assert record["parent"]["model_sha256"] == sha256(parent / "model.safetensors")
    assert record["model_sha256"] == sha256(out / "model" / "model.safetensors")
    assert meta["data_fingerprint"] == opened.meta["data_fingerprint"]
    before, after = opened.trained.model.state_dict(), load_trained(out / "model")[0].model
    changed = [k for k, v in after.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the saved weights are the parent's, not the unlearned ones"


def test_evaluate_reads_the_unlearned_directory_and_its_forget_set(unlearned) -> None:
    _, out = unlearned
    res = RUN.invoke(app, ["evaluate", "--from", str(out / "model"), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "its forget set" in res.output
    results = json.loads((out / "results.json").read_text())
    row = next(r for r in results["runs"] if r["method"] == "finetune")
    # the same model on the same samples: the accuracies the run measured
    for part in ("retain", "forget", "test"):
        assert f"{row['acc'][part]:.1f}" in res.output


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pt2"])
def test_export_gives_a_file_that_reproduces_the_model(unlearned, tmp_path, suffix) -> None:
    _, out = unlearned
    target = tmp_path / f"model{suffix}"
    res = RUN.invoke(app, ["export", "--from", str(out / "model"), "--out", str(target)])
    assert res.exit_code == 0, res.output
    sidecar = json.loads((tmp_path / f"model{suffix}.json").read_text())
    assert sidecar["file_sha256"] == sha256(target)
    assert sidecar["unlearning"]["method"] == "finetune"
    trained, _, meta = load_trained(out / "model")
    model = trained.model.eval()
    x = torch.randn(5, meta["in_chans"], meta["image_size"], meta["image_size"])
    with torch.no_grad():
        want = model(x)
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            fresh = load_trained(out / "model")[0].model.eval()
            fresh.load_state_dict(load_file(str(target)))
            got = fresh(x)
        elif suffix == ".pt":
            got = torch.jit.load(str(target))(x)
        else:
            got = torch.export.load(str(target)).module()(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_export_refuses_an_unknown_suffix_and_writes_nothing(unlearned, tmp_path) -> None:
    _, out = unlearned
    res = RUN.invoke(app, ["export", "--from", str(out / "model"), "--out", str(tmp_path / "m.x")])
    assert res.exit_code == 2 and "cannot tell the export format" in res.output
    assert list(tmp_path.iterdir()) == []


def test_unlearning_an_unlearned_model_again_is_refused(unlearned, tmp_path) -> None:
    parent, out = unlearned
    again = tmp_path / "again"
    res = RUN.invoke(
        app,
        ["unlearn", "--method", "finetune", "--from", str(out / "model"), "--out", str(again)],
    )
    assert res.exit_code == 2 and "already an unlearned model" in res.output
    assert str(parent.resolve()) in res.output.replace("\n", "")
    assert not again.exists()


def test_a_linearised_fast_ntk_result_is_not_written_as_weights(tmp_path, save_tiny_trained):
    parent, out = tmp_path / "model", tmp_path / "out"
    save_tiny_trained(parent)
    res = RUN.invoke(
        app,
        [
            "unlearn", "--method", "fast_ntk", "--from", str(parent), "--out", str(out),
            "--forget", "random:20", "--threads", "1",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "linearised model" in res.output and not (out / "model").exists()
    assert (out / "results.json").is_file()
