"""benchmarks/memorization.py + benchmarks/rum.py in the full-training setting, end to end on
tiny noisy digits: the gap search picks an epoch count and records the gap, the RUM run forgets
memorization-level and random 10% sets, checks each seed's gap, and reports the seed paper's
claims with Fast-NTK excluded; bad arguments are one line and exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks"


def _run(script: str, flags: str, *args: str) -> subprocess.CompletedProcess:
    """``script`` with the space-separated ``flags`` and then ``args`` (paths)."""
    return subprocess.run(
        [sys.executable, str(BENCH / script), *flags.split(), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mem")
    done = _run(
        "memorization.py",
        "--subset 200 --k 6 --chunk 3 --epoch-grid 1,30 --min-gap 1 --executor local "
        "--timing-k 0 --threads 1",
        *["--out", str(out / "mem"), "--cache", str(out / "cache")],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "mem"


@pytest.mark.benchmark
def test_the_gap_search_fixes_the_recipe_and_is_reported(scored):
    r = json.loads((scored / "results.json").read_text())
    assert [c["epochs"] for c in r["gap_search"]] == [1, 30]
    assert not r["gap_search"][0]["reached"] and r["gap_search"][1]["reached"]
    assert r["epochs"] == 30  # FZ and the proxies used the chosen count
    assert r["gap"]["epochs"] == 30 and r["gap"]["target"] == 1
    assert r["gap"]["gap"] == pytest.approx(r["gap"]["train_acc"] - r["gap"]["test_acc"])
    report = (scored / "report.md").read_text()
    assert "Train-test gap of the original" in report and "1 epochs" in report


@pytest.mark.benchmark
def test_rum_in_the_full_training_setting(scored, tmp_path):
    out = tmp_path / "rum"
    done = _run(
        "rum.py",
        "--levels high,random --forget-size 10 --seeds 2 --baselines neggrad_plus",
        *["--mem", str(scored), "--out", str(out)],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    n = r["n_train"]
    assert {row["n_forget"] for row in r["runs"] if row["level"] == "random"} == {round(0.1 * n)}
    assert {row["n_forget"] for row in r["runs"] if row["level"] == "high"} == {10}
    assert [g["seed"] for g in r["gap"]["per_seed"]] == [0, 1] and r["gap"]["target"] == 1
    assert r["recipe"]["peft"] == "full" and r["recipe"]["epochs"] == 30
    # the most memorized samples are the ones retraining does not predict (their labels were
    # relabelled at random): retrain's accuracy on them is far below a random 10%'s
    forget = {lv: r["summary"][lv]["retrain"]["acc_forget"] for lv in ("high", "random")}
    assert forget["high"] < forget["random"] - 30
    variants = set(r["summary"]["high"])
    assert {"neggrad_plus", "rum[neggrad_plus]/fz", f"rum[neggrad_plus]/{r['proxy']}"} <= variants
    for level in ("high", "random"):
        t = r["targets"][level]
        assert t["best_single"] == "neggrad_plus" and t["best_rum"].startswith("rum[")
        assert "too few seeds" in t["best_rum_minus_best_single"]["verdict"]
        assert set(t["proxy_vs_fz_tow"]) == {"rum[neggrad_plus]", "rum[paper]"}
    c = r["scoring_cost"]
    assert c["proxy_cost_pct_of_fz"] == pytest.approx(
        100 * (c["proxy_seconds"] + c["proxy_training_run_seconds"]) / c["fz_model_seconds"]
    )
    report = (out / "report.md").read_text()
    assert "Fast-NTK is not in this table" in report and "| fast_ntk | not run |" in report
    assert "random 10% of D" in report and "Train-test gap of each seed's original" in report


@pytest.mark.benchmark
def test_rum_on_the_full_set_ranks_and_unlearns_by_the_proxy(scored, tmp_path):
    out = tmp_path / "full"
    done = _run(
        "rum.py",
        "--full-set --epoch-grid 2,30 --levels high --forget-size 20 --seeds 1 "
        "--baselines neggrad_plus",
        *["--mem", str(scored), "--out", str(out)],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    assert r["full_set"] and r["selected_by"] == "proxy" and r["n_train"] > 1000
    assert not any("/fz" in v for v in r["summary"]["high"])  # no FZ on the full set
    assert r["scoring_cost"]["fz_extrapolated"] and r["scoring_cost"]["fz_measured_on"] == 200
    search = r["gap"]["search"]  # the whole set searched its own epoch count
    assert [c["epochs"] for c in search] in ([2], [2, 30])
    assert search[-1]["reached"] or len(search) == 2
    assert r["recipe"]["epochs"] == search[-1]["epochs"]
    assert r["complete"] and r["levels"] == ["high"]
    # seed 0's original is the search's last run (reused, not trained again): same gap
    assert r["gap"]["per_seed"][0]["gap"] == pytest.approx(search[-1]["gap"])
    # the whole set's proxy against the subset's FZ, each subset sample mapped to its row
    proxy = out / f"proxy_{r['proxy']}_seed0.csv"
    sel = _run("proxy_selection.py", "--top 20 --fz-top 10", "--mem", str(scored),
               "--proxy", str(proxy), "--out", str(out / "sel.json"))  # fmt: skip
    assert sel.returncode == 0, sel.stderr[-3000:]
    s = json.loads((out / "sel.json").read_text())
    assert s["n_subset"] == 200 and s["n_whole"] == r["n_train"]
    assert 0 <= s["top_in_subset"] <= 20 and s["fz_tail_in_top"] <= 10
    assert s["spearman_with_fz"] is None or -1 <= s["spearman_with_fz"] <= 1
    assert 0 <= s["top_share_fz_zero"] <= 1
    missing = _run("proxy_selection.py", "", "--mem", str(scored), "--proxy", str(out / "no.csv"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


@pytest.mark.benchmark
def test_gap_only_sizes_the_recipe_without_scoring(tmp_path):
    out = tmp_path / "gap"
    done = _run(
        "memorization.py",
        "--subset 200 --epoch-grid 1,30 --min-gap 1 --gap-only --threads 1",
        *["--out", str(out)],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "target 1 NOT reached" in done.stdout and "target 1 reached" in done.stdout
    g = json.loads((out / "gap.json").read_text())
    assert [c["epochs"] for c in g["checks"]] == [1, 30] and g["chosen_epochs"] == 30
    assert g["reached"] and g["n_train"] == 200
    assert not (out / "results.json").exists()  # nothing scored


@pytest.mark.benchmark
def test_bad_levels_and_grids_are_one_line_errors(tmp_path):
    done = _run("rum.py", "--levels hi", "--mem", str(tmp_path), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and done.stderr.startswith("error: --levels")
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
    done = _run("rum.py", "--epoch-grid 8,16", "--mem", str(tmp_path), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "--epoch-grid needs --full-set" in done.stderr
    assert not (tmp_path / "r").exists()
    done = _run("memorization.py", "--epoch-grid 8,4", "--out", str(tmp_path / "m"))
    assert done.returncode == 2 and done.stderr.startswith("error: --epoch-grid 8,4")
    assert "Traceback" not in done.stderr and not (tmp_path / "m").exists()
