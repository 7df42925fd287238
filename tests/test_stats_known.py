"""Known answers: each statistic against scipy/statsmodels or a value computed by hand on tiny arrays."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from tlsweep.stats import (
    StatsInputError,
    adjust_pvalues,
    bootstrap_interval,
    cohens_dz,
    compare_arms,
    decide_family,
    exact_test_floor,
    expected_best_curve,
    fit_cell_trend,
    hedges_g,
    mann_whitney_test,
    mean_difference,
    min_replicates,
    paired_t_test,
    probability_of_improvement,
    ratio_of_means,
    seeds_for_power,
    sign_flip_pvalues,
    sign_flip_test,
    tost_paired,
    tost_unpaired,
    tuning_curve,
    welch_t_test,
)

A = np.array([0.61, 0.58, 0.64, 0.60, 0.57, 0.63])
B = np.array([0.50, 0.52, 0.49, 0.55, 0.47, 0.51])


@pytest.mark.parametrize("method,sm_method", [("holm", "holm"), ("bonferroni", "bonferroni"), ("bh", "fdr_bh")])
def test_adjust_pvalues_matches_statsmodels(method: str, sm_method: str) -> None:
    p = np.array([0.001, 0.04, 0.03, 0.2, 0.012, 0.5])
    expected = multipletests(p, method=sm_method)[1]
    np.testing.assert_allclose(adjust_pvalues(p, method), expected)
    batch = np.stack([p, p[::-1], np.roll(p, 2)])
    for row, adjusted in zip(batch, adjust_pvalues(batch, method), strict=False):
        np.testing.assert_allclose(adjusted, multipletests(row, method=sm_method)[1])


def test_adjust_pvalues_nan_counts_as_one_and_stays_nan() -> None:
    adjusted = adjust_pvalues([0.01, np.nan, 0.02], "holm")
    np.testing.assert_allclose(adjusted[[0, 2]], multipletests([0.01, 1.0, 0.02], method="holm")[1][[0, 2]])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.2], "none"), [0.01, 0.2])
    with pytest.raises(StatsInputError, match="correction must be one of"):
        adjust_pvalues([0.1], "sidak")
    with pytest.raises(StatsInputError, match=r"lie in \[0, 1\]"):
        adjust_pvalues([1.5], "holm")


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_paired_t_matches_scipy_and_is_batched(alternative: str) -> None:
    result = paired_t_test(A, B, alternative=alternative)
    expected = scipy.stats.ttest_rel(A, B, alternative=alternative)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-10)
    assert result.statistic == pytest.approx(expected.statistic)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    batched = paired_t_test(a, b, alternative=alternative).pvalue
    np.testing.assert_allclose(batched, scipy.stats.ttest_rel(a, b, axis=-1, alternative=alternative).pvalue)


def test_sign_flip_is_exact_by_hand() -> None:
    d = np.array([0.3, -0.1, 0.2, 0.5, -0.4, 0.25])
    patterns = np.array(list(itertools.product([1, -1], repeat=d.size)))
    flipped = (patterns * d).mean(axis=1)
    expected = np.mean(flipped >= d.mean() - 1e-12)
    result = sign_flip_test(d, alternative="greater", rng=np.random.default_rng(0))
    assert result.pvalue == pytest.approx(expected)
    assert result.name == "exact sign-flip"
    # all pairs favour treated: the floor 1/2**n one-sided, 2/2**n two-sided
    positive = np.abs(d) + 0.01
    rng = np.random.default_rng(0)
    assert sign_flip_test(positive, alternative="greater", rng=rng).pvalue == pytest.approx(1 / 64)
    assert sign_flip_test(positive, alternative="two-sided", rng=rng).pvalue == pytest.approx(2 / 64)


def test_tost_matches_statsmodels() -> None:
    p, _, _ = ttost_paired(A, B + 0.1, -0.03, 0.03)
    assert tost_paired(A, B + 0.1, margin=0.03).pvalue == pytest.approx(p)
    p_ind, _, _ = ttost_ind(A, B + 0.1, -0.03, 0.03, usevar="unequal")
    assert tost_unpaired(A, B + 0.1, margin=0.03).pvalue == pytest.approx(p_ind)
    with pytest.raises(StatsInputError, match="margin must be > 0"):
        tost_paired(A, B, margin=0)


def test_unpaired_tests_match_scipy() -> None:
    assert welch_t_test(A, B[:4], alternative="greater").pvalue == pytest.approx(
        scipy.stats.ttest_ind(A, B[:4], equal_var=False, alternative="greater").pvalue
    )
    # 3 vs 3, complete separation: the exact one-sided p is 1/C(6,3) = 0.05
    assert mann_whitney_test([4, 5, 6], [1, 2, 3], alternative="greater").pvalue == pytest.approx(0.05)


def test_effect_sizes_by_hand() -> None:
    assert cohens_dz([2, 3, 4], [1, 1, 1]) == pytest.approx(2.0)  # d = 1,2,3: mean 2, sd 1
    assert hedges_g([1, 2, 3], [0, 1, 2]) == pytest.approx(0.8)  # d = 1 pooled sd 1, J = 1 − 3/15
    assert np.isnan(cohens_dz([1.0], [0.0]))
    rng = np.random.default_rng(0)
    poi = probability_of_improvement([1, 2, 3], [0, 2, 5], paired=False, rng=rng, n_resamples=0)
    assert poi.estimate == pytest.approx(0.5)  # (1 + 1.5 + 2) / 9
    u = scipy.stats.mannwhitneyu(A, B).statistic
    assert probability_of_improvement(A, B, paired=True, rng=rng, n_resamples=0).estimate == pytest.approx(
        u / (A.size * B.size)
    )


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def test_bootstrap_intervals_equal_scipy_with_the_same_generator() -> None:
    interval = bootstrap_interval((A, B), _mean_difference, paired=True, rng=np.random.default_rng(7), n_resamples=999)
    expected = scipy.stats.bootstrap(
        (A, B),
        lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=999,
        method="BCa",
        rng=np.random.default_rng(7),
    )
    assert interval.method == "BCa"
    assert interval.estimate == pytest.approx(np.mean(A - B))
    assert (interval.low, interval.high) == pytest.approx(
        (expected.confidence_interval.low, expected.confidence_interval.high)
    )


def test_difference_intervals_are_the_t_intervals_of_the_tests() -> None:
    paired = mean_difference(A, B, paired=True)
    expected = scipy.stats.ttest_rel(A, B).confidence_interval(0.95)
    assert paired.method == "paired t" and paired.estimate == pytest.approx(np.mean(A - B))
    assert (paired.low, paired.high) == pytest.approx((expected.low, expected.high))
    wide = mean_difference(A, B, paired=True, confidence=1 - 0.05 / 18)
    assert wide.low < paired.low and wide.high > paired.high
    welch = mean_difference(A, B[:4], paired=False)
    expected = scipy.stats.ttest_ind(A, B[:4], equal_var=False).confidence_interval(0.95)
    assert welch.method == "Welch t" and (welch.low, welch.high) == pytest.approx((expected.low, expected.high))


def test_ratio_interval_is_fieller_by_hand() -> None:
    ratio = ratio_of_means(A, B, paired=True)
    assert ratio.method == "Fieller" and ratio.estimate == pytest.approx(A.mean() / B.mean())
    critical = scipy.stats.t.ppf(0.975, A.size - 1)
    for bound in (ratio.low, ratio.high):  # at each bound, the paired t of A − R·B sits on the critical value
        d = A - bound * B
        assert abs(d.mean() / (d.std(ddof=1) / np.sqrt(d.size))) == pytest.approx(critical)
    assert ratio.low < ratio.estimate < ratio.high


def test_bootstrap_degenerate_inputs() -> None:
    rng = np.random.default_rng(0)
    constant = bootstrap_interval((B + 0.1, B), _mean_difference, paired=True, rng=rng, n_resamples=999)
    assert constant.method == "constant" and constant.low == constant.high == pytest.approx(0.1)
    lumpy = bootstrap_interval(
        (np.r_[np.zeros(7), 1.0], np.zeros(8)), _mean_difference, paired=True, rng=rng, n_resamples=999
    )
    assert lumpy.method in ("BCa", "percentile") and np.isfinite(lumpy.low) and lumpy.low <= lumpy.high
    assert mean_difference(B + 0.1, B, paired=True).method == "constant"
    single = mean_difference([0.6], [0.5], paired=True)
    assert single.method.startswith("not computed") and np.isnan(single.low)
    assert ratio_of_means([0.1, 0.2], [0.0, 0.0], paired=True).method.startswith("not computed")
    with pytest.raises(StatsInputError, match=r"numpy.random.Generator"):
        bootstrap_interval((A, B), _mean_difference, paired=True, rng=np.random.RandomState(0))  # type: ignore[arg-type]


def test_input_checks_name_the_problem() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(StatsInputError, match="NaN or infinite values at positions \\[1\\]"):
        mean_difference([0.1, np.nan], [0.1, 0.2], paired=True)
    with pytest.raises(StatsInputError, match="equal length"):
        mean_difference([0.1, 0.2, 0.3], [0.1, 0.2], paired=True)
    with pytest.raises(StatsInputError, match="alternative must be one of"):
        paired_t_test(A, B, alternative="bigger")
    with pytest.raises(StatsInputError, match="must be 1-D"):
        cohens_dz(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(StatsInputError, match="seeds must be unique"):
        compare_arms(
            A,
            B,
            treated_seeds=[1, 1, 2, 3, 4, 5],
            baseline_seeds=range(6),
            alternative="greater",
            margin=0.02,
            smallest_threshold=0.05,
            rng=rng,
        )


def test_exact_floors_and_minimum_seeds_match_the_specification() -> None:
    assert exact_test_floor(3, 3, paired=False, alternative="two-sided") == pytest.approx(0.1)
    assert exact_test_floor(4, 4, paired=False, alternative="two-sided") == pytest.approx(2 / 70)
    assert exact_test_floor(5, 5, paired=True, alternative="greater") == pytest.approx(1 / 32)
    assert min_replicates(0.05, paired=True, alternative="two-sided") == 6
    assert min_replicates(0.05 / 6, paired=True, alternative="two-sided") == 8  # SCIENCE.md §3.6
    assert min_replicates(0.05, paired=False, alternative="two-sided") == 4


@pytest.mark.parametrize(
    "d,alpha,paired,expected",
    [
        (1.0, 0.05, True, (10, 13)),
        (0.5, 0.05, True, (34, 44)),
        (1.0, 0.05 / 6, True, (16, 19)),
        (0.8, 0.05, False, (26, 34)),
        (2.0, 0.05 / 6, False, (8, 10)),
    ],
)
def test_seeds_for_power_reproduce_the_science_table(
    d: float, alpha: float, paired: bool, expected: tuple[int, int]
) -> None:
    got = tuple(seeds_for_power(d, alpha=alpha, power=p, paired=paired, alternative="two-sided") for p in (0.8, 0.9))
    assert got == expected
    assert seeds_for_power(0.0, alpha=0.05, paired=True, alternative="greater") is None


def test_u_estimator_equals_brute_force_over_subsets() -> None:
    values = np.array([0.41, 0.55, 0.38, 0.62, 0.50, 0.47, 0.59])
    curve = expected_best_curve(values)
    for k in range(1, values.size + 1):
        brute = np.mean([max(c) for c in itertools.combinations(values, k)])
        assert curve[k - 1] == pytest.approx(brute)
        brute_min = np.mean([min(c) for c in itertools.combinations(values, k)])
        assert expected_best_curve(values, mode="min")[k - 1] == pytest.approx(brute_min)
    assert expected_best_curve([0.1, 0.5, 0.3, 0.9]) == pytest.approx([0.45, 4.0 / 6, 0.8, 0.9])
    band = tuning_curve(values, rng=np.random.default_rng(3), n_resamples=500)
    assert np.all(band.low <= band.expected + 1e-12) and np.all(band.expected <= band.high + 1e-12)
    again = tuning_curve(values, rng=np.random.default_rng(3), n_resamples=500)
    np.testing.assert_array_equal(band.low, again.low)


def test_compare_arms_pairs_by_seed_regardless_of_order() -> None:
    rng = np.random.default_rng(0)
    seeds = np.arange(6)
    shuffled = np.array([3, 0, 5, 1, 4, 2])
    contrast = compare_arms(
        A[shuffled],
        B,
        treated_seeds=seeds[shuffled],
        baseline_seeds=seeds,
        alternative="greater",
        margin=0.02,
        smallest_threshold=0.05,
        rng=rng,
        n_resamples=0,
    )
    assert contrast.paired and contrast.n_pairs == 6
    assert contrast.test.pvalue == pytest.approx(scipy.stats.ttest_rel(A, B, alternative="greater").pvalue)
    assert contrast.d_z == pytest.approx(cohens_dz(A, B))
    one_lost = compare_arms(
        A,
        B[:5],
        treated_seeds=seeds,
        baseline_seeds=seeds[:5],
        alternative="greater",
        margin=0.02,
        smallest_threshold=0.05,
        rng=rng,
        n_resamples=0,
    )  # a missing run drops its pair, not the pairing
    assert one_lost.paired and one_lost.n_pairs == 5 and one_lost.dropped == 1
    assert one_lost.test.pvalue == pytest.approx(scipy.stats.ttest_rel(A[:5], B[:5], alternative="greater").pvalue)
    assert "1 run(s) without a partner seed left out (seed(s) [5])" in one_lost.notes[0]
    unpaired = compare_arms(
        A,
        B[:5],
        treated_seeds=seeds,
        baseline_seeds=seeds[:5] + 100,
        alternative="greater",
        margin=0.02,
        smallest_threshold=0.05,
        rng=rng,
        n_resamples=0,
    )  # the arms share no seed: an unpaired design
    assert not unpaired.paired and unpaired.design.startswith("unpaired (the arms share no seed)")
    assert unpaired.test.name == "Welch t" and unpaired.robustness.name == "Mann–Whitney U"


def test_decide_family_labels_with_the_t_test_and_flags_the_exact_floor() -> None:
    rng = np.random.default_rng(0)
    kwargs = dict(alternative="greater", margin=0.02, rng=rng, n_resamples=0)
    strong = compare_arms(A, B, treated_seeds=range(6), baseline_seeds=range(6), smallest_threshold=0.025, **kwargs)
    same = compare_arms(
        B + 0.001 * np.arange(6),
        B,
        treated_seeds=range(6),
        baseline_seeds=range(6),
        smallest_threshold=0.025,
        **kwargs,
    )
    worse = compare_arms(B, A, treated_seeds=range(6), baseline_seeds=range(6), smallest_threshold=0.025, **kwargs)
    few = compare_arms(
        A[:3], B[:3], treated_seeds=range(3), baseline_seeds=range(3), smallest_threshold=0.025, **kwargs
    )
    missing = compare_arms(A, [], treated_seeds=range(6), baseline_seeds=[], smallest_threshold=0.025, **kwargs)
    labels = [d.label for d in decide_family([strong, same, worse, few, missing], alpha=0.05, correction="none")]
    assert labels == ["supported", "equivalent", "not supported", "inconclusive", "inconclusive"]
    # without correction each cell's two directions share alpha: 3 pairs, one-sided p 0.027 → 0.054 adjusted
    assert float(few.test.pvalue) == pytest.approx(scipy.stats.ttest_rel(A[:3], B[:3], alternative="greater").pvalue)
    decisions = decide_family([few, missing], alpha=0.05, correction="holm")
    assert decisions[0].reason == "neither a significant difference nor equivalence"
    assert "baseline arm has no usable runs" in decisions[1].reason
    # 3 pairs with a large effect: the t-test decides although the exact test's floor (1/8) cannot reach alpha/4
    big = B[:3] + 0.3 + np.array([0.001, -0.002, 0.0015])
    huge = compare_arms(
        big, B[:3], treated_seeds=range(3), baseline_seeds=range(3), smallest_threshold=0.0125, **kwargs
    )
    decided = decide_family([huge, few], alpha=0.05, correction="holm")[0]
    assert decided.label == "supported" and not huge.robust_reachable and huge.needed_replicates == 7
    assert "floor 0.125 with 3 pairs is above the family's smallest threshold 0.0125: it needs 7" in decided.robust_note


def test_the_trend_model_recovers_known_slopes_with_cells_as_replicates() -> None:
    rng = np.random.default_rng(5)
    rows = [
        {"delta": 10 - 3 * log2f - 0.4 * epochs + rng.normal(0, 0.3), "log2_fraction": log2f, "epochs": epochs}
        for log2f in (-3.0, -1.0, 0.0)
        for epochs in (2.0, 6.0, 12.0)
    ]
    model = fit_cell_trend(pd.DataFrame(rows))
    assert model.fitted and model.df == 6 and model.n_cells == 9
    table = model.coefficients.set_index("term")
    for term, truth in (("treated:log2_fraction", -3.0), ("treated:epochs", -0.4)):
        assert table.loc[term, "ci_low"] < truth < table.loc[term, "ci_high"]
        assert table.loc[term, "estimate"] == pytest.approx(truth, abs=0.2)
    # the same slopes from statsmodels' OLS on the cell means
    import statsmodels.formula.api as smf

    ols = smf.ols("delta ~ log2_fraction + epochs", pd.DataFrame(rows)).fit()
    assert table.loc["treated:epochs", "p"] == pytest.approx(ols.pvalues["epochs"])
    assert table.loc["treated:log2_fraction", "se"] == pytest.approx(ols.bse["log2_fraction"])
    four = fit_cell_trend(pd.DataFrame(rows[:2] + rows[3:5]))  # 4 cells, 3 parameters: 1 df
    assert not four.fitted and "too few cells for a trend test" in four.method


@pytest.mark.parametrize("n", [5, 8, 20])
def test_sign_flip_pvalues_equal_three_sign_flip_tests(n: int) -> None:
    d = np.random.default_rng(n).normal(0.3, 1.0, n)
    flips = sign_flip_pvalues(d, rng=np.random.default_rng(1))
    for alternative in ("greater", "less", "two-sided"):
        single = sign_flip_test(d, alternative=alternative, rng=np.random.default_rng(1))
        assert flips[alternative].pvalue == pytest.approx(single.pvalue, abs=0)
