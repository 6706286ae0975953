"""The control's interval on simulated audits with a known answer (issue 27, part 2): the
permutation interval covers 0.5 about 95% of the time under the null, the old pair bootstrap
measurably less when a model's forget examples move together, and a clear shift is detected."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.errors import UnlearnkitError
from unlearnkit.metrics.audit_intervals import (
    PAIR_INTERVALS,
    Fit,
    pair_interval,
    role_swaps,
)
from unlearnkit.metrics.audit_simulation import KIND_DEFAULTS, NullModel, simulate_pairs
from unlearnkit.metrics.audit_stats import bootstrap_ci, loo_llr, roc_auc, tpr_at_fpr

AUC = {"auc": roc_auc}


def _coverage(model: NullModel, k: int, draws: int, methods: list[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    covered = dict.fromkeys(methods, 0)
    for d in range(draws):
        phi_in, phi_out = simulate_pairs(model, k, rng)
        for name in methods:
            interval = pair_interval(name, phi_in, phi_out, AUC, resamples=128, seed=d)["auc"]
            covered[name] += interval.covers(0.5)
    return {name: c / draws for name, c in covered.items()}


def test_permutation_covers_chance_at_its_level_where_the_pair_bootstrap_does_not():
    # one forget class: a strong effect shared by all of a model's examples (the generator's
    # calibrated default), fewer targets to keep it fast; K = 8 lists all 128 role exchanges
    model = KIND_DEFAULTS["fixed"].model_copy(update={"targets": 30})
    found = _coverage(model, 8, 120, ["permutation", "pair_bootstrap"])
    # exact test: P(reject) = 2 x 3 / 128 = 4.7%; 120 draws, sd of the share ~ 0.02
    assert found["permutation"] >= 0.9
    # measured here 0.71 (and 0.68 on real models at K = 8, docs/audit.md)
    assert found["pair_bootstrap"] <= 0.85
    assert found["permutation"] - found["pair_bootstrap"] >= 0.1


def test_jackknife_over_pairs_is_not_too_narrow():
    model = KIND_DEFAULTS["fixed"].model_copy(update={"targets": 30})
    assert _coverage(model, 8, 60, ["pair_jackknife"], seed=1)["pair_jackknife"] >= 0.9


@pytest.mark.parametrize("kind", ["fixed", "random"])
def test_an_obvious_shift_is_detected(kind):
    model = KIND_DEFAULTS[kind].model_copy(update={"targets": 40, "shift": 8.0})
    phi_in, phi_out = simulate_pairs(model, 8, np.random.default_rng(2))
    interval = pair_interval("permutation", phi_in, phi_out, AUC)["auc"]
    assert interval.low > 0.5 and not interval.covers(0.5)
    assert interval.null[1] < Fit().evaluate(phi_in, phi_out, AUC)["auc"]
    assert interval.p_value == pytest.approx(1 / 128)  # only the identity reaches it


def test_role_swaps_list_every_distinct_exchange_or_draw_them():
    listed = role_swaps(5, 1000, 0)
    assert listed.shape == (16, 5) and not listed[0].any() and not listed[:, 0].any()
    assert len({tuple(r) for r in listed}) == 16
    drawn = role_swaps(12, 100, 0)
    assert drawn.shape == (100, 12) and not drawn[0].any()


def test_permutation_interval_is_the_null_shifted_to_the_observed_value():
    model = KIND_DEFAULTS["random"].model_copy(update={"targets": 40})
    phi_in, phi_out = simulate_pairs(model, 6, np.random.default_rng(3))
    interval = pair_interval("permutation", phi_in, phi_out, AUC)["auc"]
    observed = Fit().evaluate(phi_in, phi_out, AUC)["auc"]
    q_low, q_high = interval.null
    assert interval.low == pytest.approx(max(0.0, observed - (q_high - 0.5)))
    assert interval.high == pytest.approx(min(1.0, observed + (0.5 - q_low)))
    assert interval.covers(0.5) == (q_low <= observed <= q_high)
    # K = 6: 32 exchanges, none may lie beyond at the 2.5% level -> the null's min and max
    swapped = [
        Fit().evaluate(
            np.where(s[:, None], phi_out, phi_in), np.where(s[:, None], phi_in, phi_out), AUC
        )["auc"]
        for s in role_swaps(6, 1000, 0)
    ]
    assert (q_low, q_high) == (min(swapped), max(swapped))


def test_pair_bootstrap_is_the_old_interval():
    model = KIND_DEFAULTS["fixed"].model_copy(update={"targets": 20})
    phi_in, phi_out = simulate_pairs(model, 6, np.random.default_rng(4))
    llr_in, llr_out = loo_llr(phi_in, phi_out)
    pairs, cols = np.nonzero(~np.isnan(llr_in))
    pos, neg = llr_in[pairs, cols], llr_out[pairs, cols]
    old = bootstrap_ci(roc_auc, pos, neg, n_boot=100, seed=5, groups=(pairs, pairs))
    new = pair_interval("pair_bootstrap", phi_in, phi_out, AUC, resamples=100, seed=5)["auc"]
    assert (new.low, new.high) == old and new.null is None


def test_jackknife_needs_four_pairs_and_unknown_methods_are_named():
    phi = np.random.default_rng(0).normal(size=(3, 5))
    assert np.isnan(pair_interval("pair_jackknife", phi, phi + 1, AUC)["auc"].low)
    with pytest.raises(UnlearnkitError, match="unknown U-LiRA interval 'wald'"):
        pair_interval("wald", phi, phi, AUC)
    assert set(PAIR_INTERVALS.names()) == {"pair_bootstrap", "pair_jackknife", "permutation"}


def test_simulated_null_reproduces_the_measured_spread_and_the_random_protocol():
    # the class generator is calibrated on the real K study: AUC sd 0.141 at K = 8
    rng = np.random.default_rng(6)
    aucs = [
        Fit().evaluate(*simulate_pairs(KIND_DEFAULTS["fixed"], 8, rng), AUC)["auc"]
        for _ in range(150)
    ]
    assert 0.10 < np.std(aucs) < 0.18
    phi_in, phi_out = simulate_pairs(KIND_DEFAULTS["random"], 4, rng)
    assert (np.isnan(phi_in) == np.isnan(phi_out)).all()
    assert (np.isnan(phi_in).sum(1) == 100).all()  # each pair forgets half of 200 targets


def test_a_tpr_permutation_interval_is_centred_on_its_null_not_on_half():
    # TPR at 1% FPR is ~0 for an exact method, not 0.5: its interval holds the observed value
    def tpr(p, n):
        return tpr_at_fpr(p, n, 0.01)

    model = KIND_DEFAULTS["random"].model_copy(update={"targets": 40})
    phi_in, phi_out = simulate_pairs(model, 6, np.random.default_rng(3))
    interval = pair_interval("permutation", phi_in, phi_out, {"tpr": tpr})["tpr"]
    observed = Fit().evaluate(phi_in, phi_out, {"tpr": tpr})["tpr"]
    q_low, q_high = interval.null
    assert q_high < 0.5 and interval.low <= observed <= interval.high
    swapped = [
        Fit().evaluate(
            np.where(s[:, None], phi_out, phi_in),
            np.where(s[:, None], phi_in, phi_out),
            {"tpr": tpr},
        )["tpr"]
        for s in role_swaps(6, 1000, 0)
    ]
    centre = float(np.median(swapped))
    assert interval.low == pytest.approx(max(0.0, observed - (q_high - centre)))
    assert interval.high == pytest.approx(min(1.0, observed + (centre - q_low)))
