"""Calibration, not shape: error rates of the report's tests on simulated cells with known truth.

Simulations are vectorised (replicates on the last axis) through the same functions the report calls; the
end-to-end checks run the report's own per-cell path (``compare_arms`` + ``decide_family``) without bootstrap.
Each run of a simulated cell = cell level + seed effect (shared by both arms) + run noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import TTestPower

from tlsweep.stats import adjust_pvalues, compare_arms, decide_family, paired_t_test, sign_flip_test, tost_paired

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
    gate = ALPHA if correction == "none" else ALPHA / m
    for f in range(families):
        contrasts = [
            compare_arms(
                treated[f, c],
                baseline[f, c],
                treated_seeds=seeds,
                baseline_seeds=seeds,
                alternative="greater",
                margin=0.01,
                gate_alpha=gate,
                rng=rng,
                n_resamples=0,
            )
            for c in range(m)
        ]
        significant[f] = [d.significant for d in decide_family(contrasts, alpha=ALPHA, correction=correction)]
    return significant


@pytest.mark.parametrize("noise,n", [(0.01, 8), (0.05, 10)])
def test_report_pipeline_aa_rate_per_cell(noise: float, n: int) -> None:
    rng = np.random.default_rng(int(noise * 100) + n)
    significant = _pipeline_labels(rng, 300, 2, n, effect=0.0, noise=noise, correction="none")
    low, high = band(ALPHA, significant.size, k=3.5)
    assert low <= significant.mean() <= high


def test_report_pipeline_holm_family_rate_and_power() -> None:
    rng = np.random.default_rng(21)
    null = _pipeline_labels(rng, 300, 4, 8, effect=0.0, noise=0.02, correction="holm")
    assert np.mean(null.any(axis=1)) <= band(ALPHA, 300, k=3.0)[1]
    # one cell, no correction, d_z = 1.2 with 8 pairs: detection rate ≈ the t-test's power
    noise, n, dz = 0.02, 8, 1.2
    significant = _pipeline_labels(rng, 400, 1, n, effect=dz * noise * np.sqrt(2), noise=noise, correction="none")
    power = TTestPower().power(effect_size=dz, nobs=n, alpha=ALPHA, alternative="larger")
    assert abs(significant.mean() - power) <= 4 * np.sqrt(power * (1 - power) / 400)
