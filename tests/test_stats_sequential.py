"""Group-sequential confirm seeds (tlsweep.stats.sequential): boundaries, per-look tests, Holm with recycling, and
simulations of the family-wise error rate and of the seeds saved against a fixed design of equal power."""

from __future__ import annotations

import numpy as np
import pytest

from tlsweep.stats import paired_t_test, tost_paired
from tlsweep.stats.sequential import (
    SequentialDesign,
    conditional_power,
    look_pvalues,
    nominal_levels,
    seed_looks,
    sequential_decide,
    sequential_reject,
    simulate,
    simulate_fixed,
    spent_alpha,
)

# the batches of the README's example: 4 seeds first, then 2 more per look, up to 16
LOOKS = seed_looks(4, 2, 16)


def test_seed_looks():
    assert LOOKS == (4, 6, 8, 10, 12, 14, 16)
    assert seed_looks(5, 4, 15) == (5, 9, 13, 15)
    with pytest.raises(ValueError):
        seed_looks(8, 2, 4)


def test_boundaries_match_published_lan_demets_values():
    # gsDesign (sfLDOF / sfLDPocock), K = 5 equally spaced looks, one-sided alpha 0.025
    fractions = (0.2, 0.4, 0.6, 0.8, 1.0)
    from scipy.stats import norm

    obf = norm.isf(nominal_levels(fractions, 0.025, "obrien_fleming"))
    np.testing.assert_allclose(obf, [4.877, 3.357, 2.680, 2.290, 2.031], atol=2e-3)
    pocock = norm.isf(nominal_levels(fractions, 0.025, "pocock"))
    np.testing.assert_allclose(pocock, [2.438, 2.427, 2.410, 2.397, 2.386], atol=2e-3)
    # one look spends everything: the fixed-n level
    assert nominal_levels((1.0,), 0.05)[0] == pytest.approx(0.05)
    assert spent_alpha(1.0, 0.05) == pytest.approx(0.05) and spent_alpha(0.25, 0.05) < 1e-4


def test_look_pvalues_match_the_fixed_n_tests():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, size=(3, 16))
    design = SequentialDesign(LOOKS, margin=0.4)
    looks = look_pvalues(d, design)
    for k, n in enumerate(LOOKS):
        t = paired_t_test(d[:, :n], np.zeros((3, n)), alternative="greater")
        np.testing.assert_allclose(looks.efficacy[:, k], t.pvalue, rtol=1e-9)
        tost = tost_paired(d[:, :n], np.zeros((3, n)), margin=0.4)
        np.testing.assert_allclose(looks.tost[:, k], tost.pvalue, rtol=1e-9)
    # a missing pair is left out, not counted
    d[0, 1] = np.nan
    assert look_pvalues(d, design).n_pairs[0, 0] == 3


def test_holm_recycles_the_level_of_a_rejected_cell():
    design = SequentialDesign((4, 8), alpha=0.05, futility=0.0)
    level_half = design.levels(0.025)[-1]
    level_full = design.levels(0.05)[-1]
    # cell 0 clears alpha/2 at the last look; cell 1 only clears alpha once cell 0's share is passed on
    p = np.array([[1.0, level_half / 2], [1.0, (level_half + level_full) / 2]])
    available = np.ones_like(p, dtype=bool)
    assert sequential_reject(p, available, design).tolist() == [True, True]
    bonferroni = SequentialDesign((4, 8), alpha=0.05, correction="bonferroni", futility=0.0)
    assert sequential_reject(p, available, bonferroni).tolist() == [True, False]
    # a look the cell never had does not count
    available[1, 1] = False
    assert sequential_reject(p, available, design).tolist() == [True, False]


def test_decisions_stop_settled_cells_and_carry_the_others():
    rng = np.random.default_rng(1)
    design = SequentialDesign((8, 16), margin=0.5)
    d = np.stack(
        [rng.normal(5.0, 1.0, 16), rng.normal(0.0, 0.05, 16), rng.normal(-5.0, 1.0, 16), rng.normal(0.6, 1.0, 16)]
    )
    first = sequential_decide(look_pvalues(d, design), design, looks_done=1)
    assert first.label.tolist()[:3] == ["supported", "equivalent", "not supported"]
    assert first.open.tolist() == [False, False, False, True]
    assert first.stop_look.tolist()[:3] == [1, 1, 1]
    final = sequential_decide(look_pvalues(d, design), design)
    assert not final.open.any() and final.seeds.tolist() == [8, 8, 8, 16]
    # the decisions after look k use only the first n_k seeds: later seeds cannot change them
    changed = d.copy()
    changed[:, 8:] = 100.0
    again = sequential_decide(look_pvalues(changed, design), design, looks_done=1)
    assert again.label.tolist() == first.label.tolist() and again.open.tolist() == first.open.tolist()


def test_conditional_power_rule():
    assert conditional_power(np.array([0.5]), 0.5, 0.01)[0] < 0.01  # no effect so far: no hope
    assert conditional_power(np.array([1e-4]), 0.5, 0.01)[0] > 0.9
    assert conditional_power(np.array([1e-4]), 1.0, 0.01)[0] == 0.0


def test_family_wise_error_rate_over_simulated_null_sweeps():
    """20,000 simulated null sweeps of 6 cells (no true difference anywhere): the share with any cell declared
    supported or reversed (one family for both directions) is 0.05 ± 0.01, each direction about half of it."""
    design = SequentialDesign(LOOKS, alpha=0.05, margin=0.5)
    summary = simulate(np.zeros(6), design, sweeps=20_000, rng=np.random.default_rng(20_000))
    print(
        f"null: FWER {summary.any_supported_false:.4f}, reversed {summary.any_reversed_false:.4f}, "
        f"mean seeds {summary.mean_seeds:.2f} of {summary.max_seeds}"
    )
    assert 0.04 <= summary.any_false_claim <= 0.06
    assert 0.02 <= summary.any_supported_false <= 0.035
    assert 0.02 <= summary.any_reversed_false <= 0.035
    # Pocock-type spending and Bonferroni keep the rate too
    for other in (
        SequentialDesign(LOOKS, spending="pocock", margin=0.5),
        SequentialDesign(LOOKS, correction="bonferroni", margin=0.5),
    ):
        rate = simulate(np.zeros(6), other, sweeps=20_000, rng=np.random.default_rng(7)).any_false_claim
        assert 0.04 <= rate <= 0.06, (other, rate)


def test_adaptive_seeds_save_trials_against_a_fixed_design_of_equal_power():
    """A study like the one issue 13 describes (two cells with a large advantage, one moderate, two where the
    baseline caught up, one reversed; effects in units of the SD of the paired differences, margin 0.5 SD): the
    adaptive design needs ≥ 30 % fewer confirm trials than the smallest fixed design with at least its power."""
    effects = [3.0, 2.0, 1.0, 0.0, 0.0, -1.0]
    design = SequentialDesign(LOOKS, alpha=0.05, margin=0.5)
    adaptive = simulate(effects, design, sweeps=4000, rng=np.random.default_rng(11))
    fixed_n = next(
        n
        for n in range(3, 64)
        if simulate_fixed(effects, n, design, sweeps=4000, rng=np.random.default_rng(12)).power >= adaptive.power
    )
    saved = 1 - adaptive.mean_seeds / fixed_n
    print(
        f"alternatives: power {adaptive.power:.3f}, mean seeds {adaptive.mean_seeds:.2f} (max {LOOKS[-1]}), "
        f"fixed design of equal power {fixed_n} seeds, saved {saved:.1%}"
    )
    assert adaptive.any_supported_false <= 0.06
    assert saved >= 0.30
