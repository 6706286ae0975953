"""Re-scoring a finished audit from its llr.npz (issue 27): on tiny digits audits (a fixed and a
random forget spec) the rescore gives back the run's own intervals, and the permutation
interval, null, verdict and control check the audit itself gives when run with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unlearnkit.audit import audit_config, run_audit, write_audit
from unlearnkit.audit.rescore import rescore_run
from unlearnkit.audit.ulira import phi_from_arrays
from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.metrics.audit_intervals import PAIR_INTERVALS

TINY = {
    "model_options": {"width": 8},
    "dataset_options": {"subset": 300},
    "peft": "full",
    "pretrain": False,
    "train": {"epochs": 6, "lr": 0.05, "batch_size": 32},
    "methods": ["retrain", "finetune"],
    "method_params": {"finetune": {"epochs": 1}},
}
FIELDS = (
    "auc_ci95",
    "tpr_at_1pct_fpr_ci95",
    "tpr_at_0.1pct_fpr_ci95",
    "auc_null95",
    "auc_p_value",
    "distinguishable",
)


@pytest.fixture(scope="module", params=[("class:3", 6, 4), ("random:0.1", 6, 2)], ids=str)
def audits(request, tmp_path_factory):
    """One tiny audit under the old interval (written to disk) and the same models scored with
    the permutation interval (from the cache: nothing trained twice). ~5 s each on one thread."""
    spec, k, n = request.param
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rescore")
    cfg = build_config({**TINY, "forget": spec})
    old = run_audit(cfg, audit_config(k=k, n=n, n_boot=200, interval="pair_bootstrap"), root)
    new = run_audit(cfg, audit_config(k=k, n=n, n_boot=200, interval="permutation"), root)
    torch.set_num_threads(before)
    assert new.results["cost"]["models_trained_now"] == 0
    return write_audit(old, root / "run"), old.results, new.results


def test_rescore_reproduces_the_runs_own_interval(audits):
    run_dir, old, _ = audits
    scored = rescore_run(run_dir)
    assert scored["run_interval"] == "pair_bootstrap" and scored["reproduces_run_interval"]
    assert scored["intervals"] == PAIR_INTERVALS.names()
    for method, s in old["summary"].items():
        mine = scored["methods"][method]
        assert mine["auc"] == s["auc"] and mine["tpr_at_1pct_fpr"] == s["tpr_at_1pct_fpr"]
        own = mine["intervals"]["pair_bootstrap"]
        assert {f: own[f] for f in FIELDS} == {f: s[f] for f in FIELDS}
        assert mine["intervals"]["permutation"]["cpu_seconds"] >= 0
    assert scored["control"]["pair_bootstrap"] == old["control"]


def test_rescore_gives_the_permutation_interval_the_audit_gives(audits, tmp_path):
    run_dir, _, new = audits
    scored = rescore_run(run_dir, ["permutation"])
    # a run made with the permutation interval reproduces it too
    with np.load(run_dir / "llr.npz") as saved:
        np.savez(tmp_path / "llr.npz", **{key: saved[key] for key in saved.files})
    (tmp_path / "results.json").write_text(json.dumps(new))
    assert rescore_run(tmp_path, ["pair_jackknife"])["run_interval"] == "permutation"
    for method, s in new["summary"].items():
        perm = scored["methods"][method]["intervals"]["permutation"]
        assert {f: perm[f] for f in FIELDS} == {f: s[f] for f in FIELDS}
        assert perm["auc_null95"] is not None
    assert scored["control"]["permutation"] == new["control"]
    # a method that keeps the class (or most of a random half) is told apart; retrain is not
    assert scored["methods"]["retrain"]["intervals"]["permutation"]["distinguishable"] is False


def test_a_random_spec_leaves_unseen_cells_empty(audits):
    run_dir, old, _ = audits
    with np.load(run_dir / "llr.npz") as arrays:
        phi_in, phi_out = phi_from_arrays(arrays, "finetune", old["audit"]["k"])
    assert np.array_equal(np.isnan(phi_in), np.isnan(phi_out))
    assert np.isnan(phi_in).any() != old["protocol"]["forget_is_fixed"]


def test_a_run_from_before_the_interval_setting_reads_as_pair_bootstrap(audits, tmp_path):
    run_dir = audits[0]
    results = json.loads((run_dir / "results.json").read_text())
    del results["audit"]["interval"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "llr.npz").write_bytes((run_dir / "llr.npz").read_bytes())
    assert rescore_run(tmp_path, ["pair_jackknife"])["run_interval"] == "pair_bootstrap"


def test_arrays_that_are_not_the_runs_are_refused(audits, tmp_path):
    run_dir, _, _ = audits
    (tmp_path / "results.json").write_text((run_dir / "results.json").read_text())
    with np.load(run_dir / "llr.npz") as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays["retrain/phi_unlearned"] = arrays["retrain/phi_unlearned"] + 0.5
    np.savez(tmp_path / "llr.npz", **arrays)
    with pytest.raises(UnlearnkitError, match="not this run's"):
        rescore_run(tmp_path)
    with pytest.raises(UnlearnkitError, match="has no results"):
        rescore_run(tmp_path / "nowhere")
