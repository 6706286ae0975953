"""The NTK engine reads a split's inputs chunk by chunk (issue 25): the Jacobians, the three
solvers, the precompute and the downdate give what the materialised inputs give, and a
file-backed split runs through them without its whole float tensor ever being built."""

from __future__ import annotations

import pytest
import torch
from image_folders import write_image_folder
from ntk_helpers import perturbed_bn, w0_of
from typer.testing import CliRunner

from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArraySplit
from unlearnkit.data.samples import Samples
from unlearnkit.models import create_model, select_trainable
from unlearnkit.ntk.incremental import delete_samples, precompute_state
from unlearnkit.ntk.state import NTKState
from unlearnkit.ntk.update import ridge_solutions

SOLVERS = ("primal", "dual", "cg")


def in_memory(split: ArraySplit) -> ArraySplit:
    """The same rows as a split built by hand from their materialised inputs (the old path)."""
    return ArraySplit(split.samples.load(), split.y.clone(), split.ids.clone())


def never_materialised(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, building a whole split's float tensor is a test failure."""

    def refuse(self):
        raise AssertionError("a consumer materialised a whole split's inputs")

    monkeypatch.setattr(ArraySplit, "x", property(refuse))
    monkeypatch.setattr(Samples, "materialise", refuse)


def setup(classes: int, chans: int, size: int):
    torch.manual_seed(0)
    model = perturbed_bn(create_model("smallcnn", classes, chans, size, width=4))
    return model, select_trainable(model, "bn"), w0_of(model)


def both_ways(
    model, names, w0, d: ArraySplit, classes: int, forget_ids: list[int], solvers=SOLVERS
) -> dict:
    """Gram, the solvers' solutions and the downdate, on ``d`` as given."""
    out = {}
    retain, forget = d.drop_ids(forget_ids), d.select_ids(forget_ids)
    for solver in solvers:
        s = ridge_solutions(model, names, w0, retain, forget, classes, 0.1, solver, chunk_size=8)
        out[solver] = (s.full, s.retain)
    state = precompute_state(model, names, w0, d, classes, 0.1, chunk_size=8)
    out["gram"], out["rhs"] = state.gram.clone(), state.rhs.clone()
    delete_samples(model, state, w0, forget, chunk_size=3)
    out["downdated"] = state.solution.clone()
    return out


def assert_same(a: dict, b: dict) -> None:
    """Every tensor of ``a`` equals its counterpart in ``b`` within 1e-6 (relative to 1)."""
    for key, value in a.items():
        pairs = zip(value, b[key], strict=True) if isinstance(value, tuple) else [(value, b[key])]
        for u, v in pairs:
            assert (u - v).abs().max() <= 1e-6 * max(1.0, float(v.abs().max())), key


def test_digits_views_give_the_materialised_inputs_results(digits):
    model, names, w0 = setup(10, 1, 8)
    d = digits.train.subset(torch.arange(60))
    forget = d.ids[:7].tolist()
    streamed = both_ways(model, names, w0, d, 10, forget)
    assert_same(streamed, both_ways(model, names, w0, in_memory(d), 10, forget))


def test_file_backed_split_never_builds_its_float_tensor(tmp_path, monkeypatch):
    bundle = load_dataset("imagefolder", data_dir=str(write_image_folder(tmp_path / "imgs")),
                          image_size=8, test_fraction=0.25)  # fmt: skip
    d = bundle.train
    model, names, w0 = setup(2, 3, 8)
    forget = d.ids[[0, 4, 9]].tolist()
    # CG decodes the files again on every iteration: its streaming is checked on digits
    reference = both_ways(model, names, w0, in_memory(d), 2, forget, ("primal", "dual"))
    never_materialised(monkeypatch)
    assert_same(both_ways(model, names, w0, d, 2, forget, ("primal", "dual")), reference)


@pytest.mark.slow  # spawning the pool's two processes takes most of its ~20 s
def test_file_backed_shards_on_a_process_pool(tmp_path, monkeypatch):
    d = load_dataset("imagefolder", data_dir=str(write_image_folder(tmp_path / "imgs")),
                     image_size=8, test_fraction=0.25).train  # fmt: skip
    model, names, w0 = setup(2, 3, 8)
    serial = precompute_state(model, names, w0, in_memory(d), 2, 0.1, chunk_size=4)
    never_materialised(monkeypatch)
    # each pickled shard view carries its own files only and is decoded in its worker
    pooled = precompute_state(model, names, w0, d, 2, 0.1, chunk_size=4, workers=2, shard_size=8)
    assert torch.allclose(pooled.gram, serial.gram, rtol=0, atol=1e-6)


def test_ntk_cli_loader_workers_give_the_same_state(tmp_path_factory, save_tiny_trained):
    from unlearnkit.cli.ntk import app
    from unlearnkit.ntk.deployment import STATE_FILE

    states = []
    for workers in ("0", "2"):
        out = tmp_path_factory.mktemp(f"loader{workers}")
        save_tiny_trained(out)
        args = ["precompute", "--from", str(out), "--loader-workers", workers, "--threads", "1"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(app, ["delete", "--from", str(out), "--ids", "2,7",
                                       "--loader-workers", workers])  # fmt: skip
        assert res.exit_code == 0, res.output
        states.append(NTKState.load(out / STATE_FILE))
    assert torch.equal(states[0].gram, states[1].gram)
    assert torch.equal(states[0].solution, states[1].solution)
