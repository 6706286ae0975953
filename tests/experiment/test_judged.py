"""What a results document says next to its numbers (issue 29): censored relearn seeds, the
interval method and seed count, the SVC attack's spread on the exact control, and whether the
retrain reference is well trained; the report and the CLI warnings show each."""

import pytest

from unlearnkit.experiment import judged, mia_control, reference_check, summarise
from unlearnkit.report.markdown import render_report, result_warnings, summary_table


def row(method, seed, mia, heldout, relearn=1.0, forget=50.0):
    acc = {"retain": 99.0, "forget": forget, "test": 95.0}
    return {
        "method": method,
        "seed": seed,
        "acc": acc,
        "acc_heldout": heldout,
        "mia_efficacy": mia,
        "relearn_epochs": relearn,
        "tow": 0.9,
        "tow_mia": 0.8,
        "time_s": 1.0,
        "peak_mem_mb": 0.0,
        "params_touched": 10,
    }


def document(runs, tolerance=1.0, budget=20):
    return {
        "dataset": "digits",
        "model": "smallcnn",
        "forget": "random:0.1",
        "seeds": sorted({r["seed"] for r in runs}),
        "config": {"relearn_max_epochs": budget, "reference_tolerance": tolerance},
        "bn_mode": "recompute",
        "runs": runs,
    }


def noisy_attack_runs():
    """Fashion random 10%, as published: retrain's own MIA 4.4 / 96.4 / 79.7 per seed."""
    runs = []
    for seed, ref in enumerate([4.4, 96.4, 79.7]):
        runs += [
            row("original", seed, 84.3, 92.0),
            row("retrain", seed, ref, 91.8),
            row("finetune", seed, 70.0 + seed, 91.9, relearn=None if seed < 2 else 19.0),
        ]
    return runs


def test_censored_relearn_is_in_the_summary_and_the_tables():
    results = judged(document(noisy_attack_runs()))
    entry = results["summary"]["finetune"]
    assert entry["relearn_epochs_mean"] is None  # not 19.0 from the one seed that relearned
    assert entry["relearn_epochs"]["censored"] == 2
    assert entry["relearn_epochs"]["at_least"] == pytest.approx((20 + 20 + 19) / 3)
    assert ">= 19.7 (2/3 seeds >= 20)" in summary_table(results)
    assert any("finetune" in w and "censored" in w for w in result_warnings(results))


def test_intervals_are_stated_with_their_seed_count():
    results = judged(document(noisy_attack_runs()))
    assert results["intervals"]["n_seeds"] == 3
    assert "bootstrap" in results["intervals"]["method"]
    assert "n=3" in summary_table(results)
    assert "n = 3 seeds" in render_report(results, [])


def test_noisy_attack_is_marked_uninformative():
    results = judged(document(noisy_attack_runs()))
    control = results["mia_control"]
    assert control["retrain_per_seed"] == [4.4, 96.4, 79.7]
    assert control["retrain_spread"] == pytest.approx(92.0)
    assert control["informative"] is False
    assert "uninformative" in summary_table(results)
    assert "do not rank methods by MIA" in render_report(results, [])
    assert any("MIA efficacy is uninformative" in w for w in result_warnings(results))


def test_a_clear_attack_stays_informative():
    runs = []
    for seed in range(3):
        runs += [
            row("original", seed, 3.0 + seed, 99.0),
            row("retrain", seed, 100.0 - seed, 99.0),
            row("neggrad", seed, 60.0, 98.5),
        ]
    summary = summarise(runs)
    control = mia_control(runs, summary)
    assert control["retrain_spread"] == pytest.approx(2.0)
    assert control["informative"] is True
    assert control["beyond_spread"] == {"original": True, "neggrad": True}
    assert "uninformative" not in summary_table(judged(document(runs)))


def test_single_seed_cannot_judge_the_attack():
    runs = [row("original", 0, 3.0, 99.0), row("retrain", 0, 90.0, 99.0)]
    assert mia_control(runs, summarise(runs))["informative"] is None


def test_under_trained_reference_is_flagged():
    runs = []
    for seed in range(2):
        runs += [
            row("original", seed, 50.0, 90.3),
            row("retrain", seed, 50.0, 87.0),  # 3.3 points short of the original
            row("fast_ntk", seed, 50.0, 96.4),  # and a method far above the reference
        ]
    results = judged(document(runs, tolerance=1.0))
    check = results["reference_check"]
    assert check["ok"] is False
    assert check["methods_above_reference"] == ["fast_ntk"]
    assert "under-trained" in check["warning"]
    assert "Reference check failed" in render_report(results, [])
    assert check["warning"] in result_warnings(results)


def test_well_trained_reference_passes_within_tolerance():
    summary = summarise([row("original", 0, 1.0, 99.0), row("retrain", 0, 1.0, 98.5)])
    check = reference_check(summary, tolerance=1.0)
    assert check["ok"] is True and check["warning"] is None
    assert reference_check(summary, tolerance=0.2)["ok"] is False


def test_older_results_files_still_render():
    old = document(noisy_attack_runs())
    old["summary"] = {
        m: {k: v for k, v in s.items() if k != "relearn_epochs"}
        for m, s in summarise(old["runs"]).items()
    }
    table = summary_table(old)  # no relearn dict, no mia_control: plain cells, no crash
    assert "| finetune |" in table and result_warnings(old) == []


def test_cli_table_shows_censoring_and_warns(capsys):
    from unlearnkit.cli.app import print_summary

    print_summary(judged(document(noisy_attack_runs())))
    captured = capsys.readouterr()
    out = captured.out + captured.err  # the table on stdout, the messages on the console
    assert "(3 seeds)" in out
    assert ">= 19.7" in out  # the censored cell, not 19.0
    assert "warning:" in out and "uninformative" in out and "censored" in out
