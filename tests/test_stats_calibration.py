"""Calibration, not shape: error rates of the report's tests on simulated cells with known truth.

Simulations are vectorised (replicates on the last axis) through the same functions the report calls; the
end-to-end checks run the report's own per-cell path (``compare_arms`` + ``decide_family``) without bootstrap.
The first tests draw runs as cell level + seed effect (shared by both arms) + run noise; the last ones use
``tlsweep.stats.calibration``, whose studies have structure the tests do not assume (a seed effect per cell,
cell-level deviations, ceilings, unequal variances, missing runs, divergence), with bounds the earlier report failed.
"""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import TTestPower

from tlsweep.stats import (
    adjust_pvalues,
    compare_arms,
    decide_arrays,
    decide_family,
    paired_t,
    paired_t_test,
    sign_flip_test,
    smallest_threshold,
    tost_paired,
)
from tlsweep.stats.calibration import SCENARIOS, Scenario, calibrate, simulate_runs
from tlsweep.stats.trend import design_matrix, ols_fit, one_sided_trend_p, trend_claims

ALPHA = 0.05


def simulate_cells(
    rng: np.random.Generator, shape: tuple[int, ...], n: int, *, effect: float, noise: float, seed_sd: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """Treated and baseline accuracies of shape (*shape, n): common seed effects, independent run noise."""
    seed_effect = rng.normal(0.0, seed_sd, (*shape, n))
    baseline = 0.5 + seed_effect + rng.normal(0.0, noise, (*shape, n))
    treated = 0.5 + effect + seed_effect + rng.normal(0.0, noise, (*shape, n))
    return treated, baseline


def band(rate: float, sims: int, k: float = 4.0) -> tuple[float, float]:
    se = np.sqrt(rate * (1 - rate) / sims)
    return rate - k * se, rate + k * se


@pytest.mark.parametrize("noise", [0.002, 0.02, 0.08])
@pytest.mark.parametrize("n", [6, 10, 20])
def test_aa_paired_t_rejects_at_alpha(noise: float, n: int) -> None:
    rng = np.random.default_rng(int(noise * 1000) + n)
    sims = 20_000
    treated, baseline = simulate_cells(rng, (sims,), n, effect=0.0, noise=noise)
    for alternative in ("greater", "two-sided"):
        rate = np.mean(paired_t_test(treated, baseline, alternative=alternative).pvalue <= ALPHA)
        low, high = band(ALPHA, sims)
        assert low <= rate <= high, (alternative, noise, n, rate)


@pytest.mark.parametrize("n", [6, 9])
def test_aa_exact_sign_flip_never_exceeds_alpha(n: int) -> None:
    rng = np.random.default_rng(n)
    sims = 4_000
    treated, baseline = simulate_cells(rng, (sims,), n, effect=0.0, noise=0.02)
    p = sign_flip_test(treated - baseline, alternative="greater", rng=rng).pvalue
    achievable = np.floor(ALPHA * 2**n) / 2**n  # the largest attainable level ≤ alpha of the discrete test
    low, high = band(achievable, sims)
    assert low <= np.mean(p <= ALPHA) <= min(high, ALPHA + 0.01)


@pytest.mark.parametrize("m,n", [(4, 8), (6, 10), (12, 12)])
def test_holm_keeps_the_familywise_rate_at_alpha(m: int, n: int) -> None:
    rng = np.random.default_rng(m * 100 + n)
    families = 20_000
    treated, baseline = simulate_cells(rng, (families, m), n, effect=0.0, noise=0.02)
    p = paired_t_test(treated, baseline, alternative="greater").pvalue
    holm_fwer = np.mean(np.any(adjust_pvalues(p, "holm") <= ALPHA, axis=-1))
    raw_fwer = np.mean(np.any(p <= ALPHA, axis=-1))
    _low, high = band(ALPHA, families)
    assert holm_fwer <= high
    assert holm_fwer >= 1 - (1 - ALPHA / m) ** m - 4 * np.sqrt(ALPHA / families)  # not over-conservative
    assert raw_fwer > 1.5 * ALPHA  # without correction the family-wise rate is inflated: the check has teeth
    bh_fwer = np.mean(np.any(adjust_pvalues(p, "bh") <= ALPHA, axis=-1))  # global null: FDR = FWER ≤ alpha
    assert bh_fwer <= high


def test_holm_fwer_with_some_true_effects_stays_at_alpha() -> None:
    rng = np.random.default_rng(11)
    families, m, n = 20_000, 6, 10
    effects = np.array([0.05, 0.05, 0.0, 0.0, 0.0, 0.0])[:, None]
    treated, baseline = simulate_cells(rng, (families, m), n, effect=0.0, noise=0.02)
    p = paired_t_test(treated + effects, baseline, alternative="greater").pvalue
    false_rejections = np.any(adjust_pvalues(p, "holm")[:, 2:] <= ALPHA, axis=-1)
    assert np.mean(false_rejections) <= band(ALPHA, families)[1]


@pytest.mark.parametrize("dz,n", [(0.8, 8), (1.0, 10), (0.5, 20)])
def test_detection_rate_matches_computed_power(dz: float, n: int) -> None:
    rng = np.random.default_rng(int(dz * 10) + n)
    sims, noise = 20_000, 0.02
    sd_diff = noise * np.sqrt(2)
    treated, baseline = simulate_cells(rng, (sims,), n, effect=dz * sd_diff, noise=noise)
    rate = np.mean(paired_t_test(treated, baseline, alternative="greater").pvalue <= ALPHA)
    power = TTestPower().power(effect_size=dz, nobs=n, alpha=ALPHA, alternative="larger")
    assert abs(rate - power) <= 4 * np.sqrt(power * (1 - power) / sims), (rate, power)


def test_tost_rejects_at_most_alpha_at_the_margin_and_has_power_inside() -> None:
    rng = np.random.default_rng(3)
    sims, n, noise, margin = 20_000, 12, 0.01, 0.02
    at_margin = tost_paired(*simulate_cells(rng, (sims,), n, effect=margin, noise=noise), margin=margin).pvalue
    assert np.mean(at_margin <= ALPHA) <= band(ALPHA, sims)[1]
    inside = tost_paired(*simulate_cells(rng, (sims,), n, effect=0.0, noise=noise), margin=margin).pvalue
    assert np.mean(inside <= ALPHA) > 0.9


def _pipeline_labels(
    rng: np.random.Generator, families: int, m: int, n: int, *, effect: float, noise: float, correction: str
) -> np.ndarray:
    treated, baseline = simulate_cells(rng, (families, m), n, effect=effect, noise=noise)
    seeds = np.arange(n)
    significant = np.zeros((families, m), dtype=bool)
    threshold = smallest_threshold(ALPHA, correction, m)
    for f in range(families):
        contrasts = [
            compare_arms(
                treated[f, c],
                baseline[f, c],
                treated_seeds=seeds,
                baseline_seeds=seeds,
                alternative="greater",
                margin=0.01,
                smallest_threshold=threshold,
                rng=rng,
                n_resamples=0,
            )
            for c in range(m)
        ]
        decisions = decide_family(contrasts, alpha=ALPHA, correction=correction)
        significant[f] = [d.label in ("supported", "not supported") for d in decisions]
    return significant


@pytest.mark.parametrize("noise,n", [(0.01, 8), (0.05, 10)])
def test_report_pipeline_aa_rate_per_cell(noise: float, n: int) -> None:
    """Without correction a cell's claims in either direction ("supported" or "reversed") together happen at alpha."""
    rng = np.random.default_rng(int(noise * 100) + n)
    significant = _pipeline_labels(rng, 300, 2, n, effect=0.0, noise=noise, correction="none")
    low, high = band(ALPHA, significant.size, k=3.5)
    assert low <= significant.mean() <= high


def test_report_pipeline_holm_family_rate_and_power() -> None:
    rng = np.random.default_rng(21)
    null = _pipeline_labels(rng, 600, 4, 8, effect=0.0, noise=0.02, correction="holm")
    assert np.mean(null.any(axis=1)) <= band(ALPHA, 600, k=2.5)[1]  # either direction, 0.072 at most
    # one cell, no correction, d_z = 1.2 with 8 pairs: detection rate ≈ the t-test's power at alpha/2 per direction
    noise, n, dz = 0.02, 8, 1.2
    significant = _pipeline_labels(rng, 400, 1, n, effect=dz * noise * np.sqrt(2), noise=noise, correction="none")
    power = TTestPower().power(effect_size=dz, nobs=n, alpha=ALPHA / 2, alternative="larger")
    assert abs(significant.mean() - power) <= 4 * np.sqrt(power * (1 - power) / 400)


# ---- structure the tests do not assume (tlsweep.stats.calibration; bench/calibration.py prints the full table) ----
SWEEPS = 1500


def _scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name.startswith(name))


def _below(rate: tuple[float, float], bound: float) -> bool:
    return rate[0] <= bound + 3 * rate[1]


@pytest.mark.parametrize("name", ["global null, seed effect per cell", "global null, a run missing"])
@pytest.mark.parametrize("seeds", [5, 8])
def test_false_cell_claims_in_either_direction_stay_at_alpha(name: str, seeds: int) -> None:
    result = calibrate(_scenario(name), sweeps=SWEEPS, seeds=seeds, rng=np.random.default_rng(seeds))
    assert _below(result.false_cell_claim, ALPHA), result  # the report before: 0.087–0.108 (two families)
    assert result.false_cell_claim[0] >= 0.025, result  # not bought by conservatism
    assert abs(result.coverage[0] - 0.95) <= 0.02, result  # the BCa interval it replaced: 0.858 at n = 8
    assert abs(result.simultaneous_coverage[0] - 0.95) <= 0.03, result


def test_cell_level_deviations_do_not_make_a_trend() -> None:
    result = calibrate(_scenario("no trend, cell-level"), sweeps=SWEEPS, seeds=8, rng=np.random.default_rng(3))
    assert _below(result.false_trend_claim, ALPHA), result  # the seed-level model before: 0.155


def test_a_constant_advantage_near_the_ceiling_is_no_trend() -> None:
    result = calibrate(_scenario("constant +1.5 points"), sweeps=SWEEPS, seeds=8, rng=np.random.default_rng(4))
    assert result.false_trend_claim[0] <= 0.10, result  # the logit model before: 0.887
    assert result.false_cell_claim[0] == 0.0


def test_a_seed_level_trend_model_fails_the_same_bound() -> None:
    """The check has teeth: treating the seeds as replicates of the trend (df from runs) claims a trend far more
    often than alpha when cells deviate."""
    scenario = _scenario("no trend, cell-level")
    rng = np.random.default_rng(5)
    treated, baseline, _, _ = simulate_runs(scenario, sweeps=SWEEPS, seeds=8, rng=rng)
    d = (treated[:, 0] - baseline).reshape(SWEEPS, -1)  # every pair an observation
    cell_design, names = design_matrix(scenario.cells)
    beta, se, df = ols_fit(d, np.repeat(cell_design, 8, axis=0))
    slopes = [names.index(t) for t in ("treated:log2_fraction", "treated:epochs")]
    claims, _ = trend_claims(
        *one_sided_trend_p(beta[:, slopes], se[:, slopes], df, 1.0), alpha=ALPHA, correction="holm"
    )
    assert np.mean((claims != "").any(axis=-1)) > 0.1


def test_separate_families_per_direction_fail_the_cell_bound() -> None:
    """The check has teeth: Holm within each direction separately claims falsely in about 2 alpha of sweeps."""
    treated, baseline, _, _ = simulate_runs(
        _scenario("global null, seed effect"), sweeps=4000, seeds=8, rng=np.random.default_rng(6)
    )
    tests = paired_t(treated - baseline[:, None])
    greater = adjust_pvalues(np.reshape(tests.p_greater, (4000, -1)), "holm") <= ALPHA
    less = adjust_pvalues(np.reshape(tests.p_less, (4000, -1)), "holm") <= ALPHA
    assert np.mean(greater.any(axis=-1) | less.any(axis=-1)) > ALPHA + 0.02


def test_the_vectorised_calibration_decides_as_the_report_does() -> None:
    """The bench's vectorised decisions equal compare_arms + decide_family on the same simulated sweeps."""
    scenario = Scenario("mixed", advantage=0.01, cell_sd=0.02, missing=1, arms=2)
    rng = np.random.default_rng(8)
    treated, baseline, _, _ = simulate_runs(scenario, sweeps=40, seeds=6, rng=rng)
    m = treated.shape[1] * treated.shape[2]
    tests = paired_t(treated - baseline[:, None])
    seeds = np.arange(6)
    for s in range(40):
        contrasts = []
        for arm in range(treated.shape[1]):
            for cell in range(treated.shape[2]):
                a, b = treated[s, arm, cell], baseline[s, cell]
                contrasts.append(
                    compare_arms(
                        a[np.isfinite(a)],
                        b[np.isfinite(b)],
                        treated_seeds=seeds[np.isfinite(a)],
                        baseline_seeds=seeds[np.isfinite(b)],
                        alternative="greater",
                        margin=0.01,
                        smallest_threshold=smallest_threshold(ALPHA, "holm", m),
                        rng=rng,
                        n_resamples=0,
                    )
                )
        report = [d.label for d in decide_family(contrasts, alpha=ALPHA, correction="holm")]
        np.testing.assert_allclose([c.p_greater for c in contrasts], np.ravel(tests.p_greater[s]), rtol=1e-9)
        vectorised = decide_arrays(
            np.ravel(tests.p_greater[s]),
            np.ravel(tests.p_less[s]),
            np.array([float(c.tost.pvalue) for c in contrasts]),
            alpha=ALPHA,
            correction="holm",
            alternative="greater",
        )
        assert report == vectorised.label.tolist()


def test_a_three_arm_study_with_eight_seeds_decides_its_large_effects() -> None:
    """6 cells × 3 comparisons = 18 tests in one family (36 one-sided), 8 paired seeds: cells with d_z ≥ 2.7 are
    decided although the exact sign-flip test's floor (1/256) is above the smallest threshold (0.05/36)."""
    rng = np.random.default_rng(9)
    effects = {"finetune": (0.306, 0.113), "probe": (0.312, 0.087), "finetune_vs_probe": (-0.122, 0.025)}
    contrasts = []
    for mean, sd in effects.values():
        for _cell in range(6):
            z = rng.normal(size=8)
            d = mean + sd * (z - z.mean()) / z.std(ddof=1)  # sample mean and SD exactly as reported
            baseline = 0.4 + rng.normal(0, 0.02, 8)
            contrasts.append(
                compare_arms(
                    baseline + d,
                    baseline,
                    treated_seeds=range(8),
                    baseline_seeds=range(8),
                    alternative="two-sided" if mean < 0 else "greater",
                    margin=0.01,
                    smallest_threshold=smallest_threshold(ALPHA, "holm", 18),
                    rng=rng,
                    n_resamples=0,
                )
            )
    decisions = decide_family(contrasts, alpha=ALPHA, correction="holm")
    assert [d.label for d in decisions] == ["supported"] * 18
    assert all(not c.robust_reachable for c in contrasts)
    assert all("floor 0.00391 with 8 pairs" in d.robust_note for d in decisions)
