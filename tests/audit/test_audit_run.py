"""The audit end to end on tiny digits models: retrain passes as exact, a method that keeps the
class does not, the cache resumes, the protocol's splits, and the settings' errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from unlearnkit.audit import FILES, audit_config, make_protocol, run_audit, write_audit
from unlearnkit.audit.output import render_report
from unlearnkit.audit.run import CONTROL_WARNING, control_check
from unlearnkit.cli.audit import print_summary
from unlearnkit.config import build_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.metrics.audit_intervals import Fit, pair_interval
from unlearnkit.metrics.audit_simulation import KIND_DEFAULTS, simulate_pairs
from unlearnkit.metrics.audit_stats import roc_auc
from unlearnkit.recipe import load_bundle
from unlearnkit.runtime import create_executor

TINY = {
    "model_options": {"width": 8},
    "dataset_options": {"subset": 300},
    "peft": "full",
    "pretrain": False,
    "train": {"epochs": 6, "lr": 0.05, "batch_size": 32},
}


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models on a shared 2-core machine: one thread is ~20x faster than two under load
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**overrides):
    return build_config({**TINY, **overrides})


@pytest.fixture(scope="module")
def class_audit(tmp_path_factory):
    """K = N = 8 on class 3: retrain (exact) and one epoch of fine-tuning (keeps the class)."""
    torch.set_num_threads(1)
    cfg = build_config(
        {
            **TINY,
            "forget": "class:3",
            "methods": ["retrain", "finetune"],
            "method_params": {"finetune": {"epochs": 1}},
        }
    )
    cache = tmp_path_factory.mktemp("audit") / "cache"
    seen = []
    run = run_audit(
        cfg, audit_config(k=8, n=8, n_boot=200), cache, progress=lambda d, t: seen.append((d, t))
    )
    return cfg, cache, run, seen


def test_retrain_scores_as_exact(class_audit):
    _, _, run, _ = class_audit
    s = run.results["summary"]["retrain"]
    # retrain vs independently retrained models: the attack is at chance
    assert 0.35 < s["auc"] < 0.65
    assert s["auc_ci95"][0] < 0.5 < s["auc_ci95"][1]
    assert s["tpr_at_1pct_fpr"] < 0.1
    assert s["forgetting_quality"] >= 0.9
    assert s["n_unlearned_pairs"] == 8 * run.results["protocol"]["targets"]
    # the organisers' F sits far below 1 even for the exact control at N = 8 (docs/audit.md)
    assert 0 < s["forgetting_quality_official"] < s["forgetting_quality"]
    assert s["final_score_official"] == pytest.approx(
        s["forgetting_quality_official"] * s["score"] / s["forgetting_quality"]
    )
    # the default interval is the permutation null's (issue 27): the AUC lies within it
    assert run.results["audit"]["interval"] == "permutation"
    low, high = s["auc_null95"]
    assert low <= s["auc"] <= high and s["distinguishable"] is False
    control = run.results["control"]
    assert control["method"] == "retrain" and control["covers_chance"] is True
    assert control["warning"] is None and control["auc_null95"] == s["auc_null95"]
    assert control["floor_forgetting_quality_official"] == s["forgetting_quality_official"]


def test_a_method_that_keeps_the_class_is_caught(class_audit):
    _, _, run, _ = class_audit
    s = run.results["summary"]["finetune"]
    assert s["auc"] > 0.95 and s["tpr_at_1pct_fpr"] > 0.5
    # above every role exchange but the identity: 1 of the 128 at K = 8
    assert s["distinguishable"] is True and s["auc"] > s["auc_null95"][1]
    assert s["auc_p_value"] == pytest.approx(1 / 128)
    assert "Told apart from retraining" in render_report(run.results)
    # with N = 8 the smallest resolvable F (Clopper-Pearson rates) is 0.5
    assert s["forgetting_quality"] <= 0.5
    assert s["score"] < run.results["summary"]["retrain"]["score"]


def test_progress_and_cost(class_audit):
    _, _, run, seen = class_audit
    # a class spec forgets the same set in every pair: the challenge models are the pairs
    assert run.results["protocol"]["reference_models"] == 8
    assert run.results["cost"]["models"] == 8 * 3 == seen[-1][0] == seen[-1][1]
    assert seen[0][0] == 0 and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_resumes_from_the_cache(class_audit):
    cfg, cache, run, _ = class_audit
    files = sorted(cache.rglob("*.npz"))
    assert len(files) == 24
    files[0].unlink()
    files[5].unlink()
    again = run_audit(cfg, audit_config(k=8, n=8, n_boot=200), cache)
    assert again.results["cost"]["models_trained_now"] == 2
    assert again.results["summary"] == run.results["summary"]  # training is deterministic
    other = run_audit(
        cfg.model_copy(update={"methods": ["retrain"]}), audit_config(k=8, n=8), cache
    )
    assert other.results["cost"]["models_trained_now"] == 0  # a subset of methods: all cached


def test_writes_the_run_directory(class_audit, tmp_path):
    _, _, run, _ = class_audit
    out = write_audit(run, tmp_path / "audit")
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"retrain", "finetune"}
    with (out / "llr.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * 8 * results["protocol"]["targets"]
    with np.load(out / "llr.npz") as f:
        assert f["finetune/llr_unlearned"].shape == f["finetune/llr_retrained"].shape
    assert "| retrain |" in (out / "report.md").read_text()
    write_audit(run, out)  # replacing an existing run directory leaves no staging behind
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_s3t_ensemble_scores_as_exact(tmp_path):
    """S3T trained on D with class 3 deleted (its shards retrained) against S3T trained without
    class 3: the attack is at chance, and the models are counted and cached per role."""
    # the blocks adapt a backbone pretrained on the public split (random-init LoRA stacks this
    # small stay at chance, which would make passing trivial)
    cfg = tiny_cfg(forget="class:3", methods=["retrain"], pretrain=True)
    shape = {
        "num_shards": 2,
        "num_slices": 2,
        "num_sequences": 2,
        "lora_rank": 4,
        "train": {"epochs": 4, "lr": 0.05, "batch_size": 32},
        # pinned to the set-up this bound was calibrated on; with head_init="backbone" one CI
        # run gave AUC 0.295 at K = 8 (an exact scheme, so chance: not re-calibrated yet)
        "head_init": "random",
    }
    settings = audit_config(k=8, n=8, n_boot=200, ensembles=["s3t"], ensemble_options=shape)
    run = run_audit(cfg, settings, tmp_path / "cache")
    s = run.results["summary"]["s3t"]
    assert s["reference"] == "retrained-s3t"
    # K = 8 pairs: a pair-bootstrap interval is rough (retrain's own, in a run like this one,
    # was [0.40, 0.50] at K = 8 and [0.44, 0.53] at K = 16), so bound the AUC, not the interval
    assert 0.35 < s["auc"] < 0.65
    assert s["forgetting_quality"] >= 0.9
    assert s["retain_acc_unlearned"] > 30  # a working ensemble, not a constant
    assert run.results["cost"]["models"] == 8 * (2 + 2)  # retrain + reference, s3t + its own
    assert run.results["methods"] == ["retrain", "s3t"]
    again = run_audit(cfg, settings, tmp_path / "cache")
    assert again.results["cost"]["models_trained_now"] == 0


def test_a_control_whose_interval_excludes_chance_is_flagged(class_audit):
    _, _, run, _ = class_audit
    failing = {
        "auc": 0.584,
        "auc_ci95": [0.519, 0.675],
        "forgetting_quality_official": 0.152,
        "forgetting_quality": 1.0,
    }
    control = control_check({"retrain": failing})
    assert control["covers_chance"] is False and control["warning"] == CONTROL_WARNING
    assert control_check({"retrain": {**failing, "auc_ci95": [0.45, 0.62]}})["warning"] is None
    assert control_check({"finetune": failing})["method"] is None
    report = render_report({**run.results, "control": control})
    assert f"WARNING: {CONTROL_WARNING}" in report and "0.152" in report
    assert "WARNING" not in render_report(run.results)
    assert "Floor of this run" in render_report(run.results)


def test_a_control_distinguishable_from_its_null_is_flagged_everywhere(class_audit, capsys):
    """A constructed control whose 'unlearned' models sit apart from their references: its
    AUC is outside the permutation null, and results.json, the report and the CLI say so."""
    _, _, run, _ = class_audit
    model = KIND_DEFAULTS["fixed"].model_copy(update={"targets": 30, "shift": 6.0})
    phi_in, phi_out = simulate_pairs(model, 8, np.random.default_rng(0))
    interval = pair_interval("permutation", phi_in, phi_out, {"auc": roc_auc})["auc"]
    retrain = {
        **run.results["summary"]["retrain"],
        "auc": Fit().evaluate(phi_in, phi_out, {"auc": roc_auc})["auc"],
        "auc_ci95": [interval.low, interval.high],
        "auc_null95": list(interval.null),
    }
    control = control_check({**run.results["summary"], "retrain": retrain})
    assert control["covers_chance"] is False and control["warning"] == CONTROL_WARNING
    results = {**run.results, "control": control}
    assert json.loads(json.dumps(results))["control"]["warning"] == CONTROL_WARNING
    report = render_report(results)
    assert f"WARNING: {CONTROL_WARNING}" in report and "lies outside the permutation" in report
    print_summary(results)
    printed = capsys.readouterr().out
    assert CONTROL_WARNING in printed and "Control check passed" not in printed


def test_s3t_is_audited_under_both_deletion_policies(tmp_path):
    """The eager policy (touched shards retrained) and deactivation only (manual: blocks
    switched off, nothing retrained) are two rows, each against S3T trained without F, and
    each row records its policy."""
    ids = load_bundle(tiny_cfg()).train.ids[:3].tolist()
    path = tmp_path / "forget.json"
    path.write_text(json.dumps(ids))
    cfg = tiny_cfg(forget=f"indices:{path}", methods=["retrain"], pretrain=True)
    shape = {
        "num_shards": 2,
        "num_slices": 2,
        "num_sequences": 2,
        "lora_rank": 4,
        "train": {"epochs": 2, "lr": 0.05, "batch_size": 32},
    }
    settings = audit_config(
        k=3,
        n=3,
        n_boot=20,
        ensembles=["s3t"],
        ensemble_policies=["eager", "manual"],
        ensemble_options=shape,
    )
    run = run_audit(cfg, settings, tmp_path / "cache")
    s = run.results["summary"]
    assert run.results["methods"] == ["retrain", "s3t", "s3t-deactivate"]
    assert (s["s3t"]["policy"], s["s3t-deactivate"]["policy"]) == ("eager", "manual")
    assert s["s3t"]["reference"] == s["s3t-deactivate"]["reference"] == "retrained-s3t"
    # retrain + reference, then s3t deleted both ways + one s3t trained without F, per seed
    assert run.results["cost"]["models"] == 3 * (2 + 3)
    # switched-off blocks are not retrained: the served ensemble differs from the eager one
    eager, off = run.arrays["s3t"]["phi_unlearned"], run.arrays["s3t-deactivate"]["phi_unlearned"]
    assert not np.allclose(eager, off)
    assert "s3t-deactivate (manual)" in render_report(run.results)


def test_bad_ensemble_settings_fail_before_training(tmp_path):
    with pytest.raises(UnlearnkitError, match="unknown ensemble 'dask'"):
        audit_config(ensembles=["dask"])
    cfg = tiny_cfg(forget="class:3", methods=["retrain"])
    bad = audit_config(ensembles=["s3t"], ensemble_options={"num_shards": 0})
    with pytest.raises(UnlearnkitError, match="num_shards"):
        run_audit(cfg, bad, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_random_spec_protocol_halves_a_pool():
    cfg = tiny_cfg(forget="random:0.1")
    bundle = load_bundle(cfg)
    protocol = make_protocol(cfg, bundle, audit_config(k=20))
    m = round(0.1 * len(bundle.train))
    assert not protocol.fixed and len(protocol.pool) == 2 * m
    assert all(len(f) == m and torch.isin(f, protocol.pool).all() for f in protocol.pair_forget)
    share = torch.stack([torch.isin(protocol.pool, f) for f in protocol.pair_forget]).float()
    assert share.mean().item() == pytest.approx(0.5)  # each pair forgets exactly half
    assert share.mean(0).min() > 0.1  # and every target is forgotten by some pairs
    assert len(protocol.challenge_forget) == m
    with pytest.raises(UnlearnkitError, match="under half of D"):
        make_protocol(tiny_cfg(forget="random:0.6"), bundle, audit_config())


def test_processes_executor_gives_the_same_outputs(tmp_path):
    cfg = tiny_cfg(forget="class:1", methods=["neggrad"], method_params={"neggrad": {"epochs": 1}})
    settings = audit_config(k=3, n=2, n_boot=20)
    local = run_audit(cfg, settings, tmp_path / "a")
    with create_executor("processes", workers=2) as ex:
        pooled = run_audit(cfg, settings, tmp_path / "b", executor=ex)
    assert pooled.results["summary"] == local.results["summary"]
    assert pooled.results["cost"]["executor"] == "processes"


@pytest.mark.slow
def test_ray_executor_gives_the_same_outputs(tmp_path):
    pytest.importorskip("ray")
    cfg = tiny_cfg(forget="class:1", methods=["neggrad"], method_params={"neggrad": {"epochs": 1}})
    settings = audit_config(k=3, n=2, n_boot=20)
    local = run_audit(cfg, settings, tmp_path / "a")
    with create_executor("ray", num_cpus=2) as ex:
        remote = run_audit(cfg, settings, tmp_path / "b", executor=ex)
    assert remote.results["summary"] == local.results["summary"]
    assert remote.results["cost"]["executor"] == "ray"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"k": 2}, "k"),
        ({"delta": 0}, "delta"),
        ({"rates": "exact"}, "rates"),
        ({"n": 1}, "n"),
        ({"interval": "wald"}, "interval"),
    ],
)
def test_bad_settings_name_the_field(values, field):
    with pytest.raises(UnlearnkitError, match=f"audit: invalid {field}"):
        audit_config(**values)
