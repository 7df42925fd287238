"""Calibration against structure the report's tests do not assume: simulated studies, their error rates and coverage.

A simulated sweep has a grid of cells (train fraction × epochs), a baseline arm and one or more treated arms, and
paired seeds. Its data break the tests' assumptions on purpose (SCIENCE.md §5.6):

- a seed effect drawn per cell (not one per seed for the whole sweep), shared by the arms of that cell;
- cell-level deviations of the advantage (the true Δ of each cell scatters around the design's trend);
- accuracies from a finite test set (binomial noise) and baselines near a ceiling (up to 97 %);
- unequal run noise in the two arms;
- diverged baseline runs scored at chance, and runs missing at random.

Each sweep goes through the functions the report uses — ``paired_t`` (as ``compare_arms``), ``decide_arrays`` (as
``decide_family``), ``design_matrix``/``ols_fit``/``trend_claims`` (as ``fit_cell_trend``/``trend_tests``) and the t
intervals of ``mean_difference`` — vectorised over thousands of sweeps. ``bench/calibration.py`` prints the tables;
``tests/test_stats_calibration.py`` runs small versions with bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from tlsweep.stats.family import decide_arrays, simultaneous_confidence
from tlsweep.stats.significance import PairedT, paired_t
from tlsweep.stats.trend import design_matrix, ols_fit, one_sided_trend_p, trend_claims

FRACTIONS = (0.1, 0.3, 1.0)
EPOCHS = (2, 6)


@dataclass(frozen=True)
class Scenario:
    """One kind of study. Accuracies are fractions; effects are in accuracy units (0.015 = 1.5 points)."""

    name: str
    advantage: float = 0.0  # the treated arms' mean advantage at the design's centre
    slope_fraction: float = 0.0  # true change of the advantage per doubling of the data
    slope_epochs: float = 0.0  # ... per epoch
    cell_sd: float = 0.0  # cell-level deviation of the advantage (each sweep draws one per cell and arm)
    baseline: tuple[float, float] = (0.6, 0.6)  # baseline accuracy of the smallest and the largest cell
    seed_sd: float = 0.02  # seed effect, drawn per cell and seed, shared by the arms
    treated_sd: float = 0.01  # run noise of the treated arms
    baseline_sd: float = 0.01  # run noise of the baseline arm
    n_test: int | None = 1000  # test-set size: binomial noise on each accuracy (None: none)
    diverge: float = 0.0  # share of baseline runs that diverge (scored at chance)
    chance: float = 0.125
    missing: int = 0  # runs missing per cell (a random arm and seed each)
    arms: int = 1  # treated arms, each compared with the baseline (one family of cells × comparisons)
    fractions: tuple[float, ...] = FRACTIONS
    epochs: tuple[int, ...] = EPOCHS

    @property
    def cells(self) -> pd.DataFrame:
        grid = [(f, e) for f in self.fractions for e in self.epochs]
        frame = pd.DataFrame(grid, columns=["train_fraction", "epochs"])
        frame["log2_fraction"] = np.log2(frame["train_fraction"])
        return frame

    def true_advantage(self, rng: np.random.Generator, sweeps: int) -> np.ndarray:
        """``[sweeps, arms, cells]`` the true Δ of every cell: trend + cell-level deviation."""
        cells = self.cells
        centred_f = cells["log2_fraction"].to_numpy() - cells["log2_fraction"].mean()
        centred_e = cells["epochs"].to_numpy() - cells["epochs"].mean()
        trend = self.advantage + self.slope_fraction * centred_f + self.slope_epochs * centred_e
        return (
            trend + rng.normal(0.0, self.cell_sd, (sweeps, self.arms, len(cells)))
            if self.cell_sd
            else np.broadcast_to(trend, (sweeps, self.arms, len(cells))).copy()
        )


def _baseline_levels(scenario: Scenario) -> np.ndarray:
    """Baseline accuracy per cell, rising with data and epochs from ``baseline[0]`` to ``baseline[1]``."""
    cells = scenario.cells
    rank = cells["log2_fraction"].rank(method="dense") + cells["epochs"].rank(method="dense")
    share = (rank - rank.min()) / max(rank.max() - rank.min(), 1)
    low, high = scenario.baseline
    return (low + (high - low) * share).to_numpy()


def _score(latent: np.ndarray, n_test: int | None, rng: np.random.Generator) -> np.ndarray:
    p = np.clip(latent, 0.0, 1.0)
    return p if n_test is None else rng.binomial(n_test, p) / n_test


def simulate_runs(
    scenario: Scenario, *, sweeps: int, seeds: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(treated ``[S, arms, C, n]``, baseline ``[S, C, n]``, true Δ ``[S, arms, C]``, diverged ``[S, C, n]``)."""
    n_cells = len(scenario.cells)
    base = _baseline_levels(scenario)[None, :, None]
    seed_effect = rng.normal(0.0, scenario.seed_sd, (sweeps, n_cells, seeds))
    truth = scenario.true_advantage(rng, sweeps)
    baseline = _score(
        base + seed_effect + rng.normal(0.0, scenario.baseline_sd, seed_effect.shape), scenario.n_test, rng
    )
    treated_latent = (base + seed_effect)[:, None] + truth[..., None]
    treated_latent = treated_latent + rng.normal(0.0, scenario.treated_sd, treated_latent.shape)
    treated = _score(treated_latent, scenario.n_test, rng)
    diverged = rng.random(baseline.shape) < scenario.diverge
    baseline = np.where(diverged, scenario.chance, baseline)
    for _ in range(scenario.missing):
        cell_seed = rng.integers(0, seeds, (sweeps, n_cells))
        in_treated = rng.random((sweeps, n_cells)) < 0.5
        s_idx, c_idx = np.meshgrid(np.arange(sweeps), np.arange(n_cells), indexing="ij")
        treated[s_idx[in_treated], :, c_idx[in_treated], cell_seed[in_treated]] = np.nan
        baseline[s_idx[~in_treated], c_idx[~in_treated], cell_seed[~in_treated]] = np.nan
    return treated, baseline, truth, diverged


def _nan_rate() -> tuple[float, float]:
    return float("nan"), float("nan")


def _rate(hits: np.ndarray) -> tuple[float, float]:
    """A share and its Monte Carlo standard error."""
    values = np.asarray(hits, dtype=float).ravel()
    if values.size == 0:
        return float("nan"), float("nan")
    p = float(values.mean())
    return p, math.sqrt(max(p * (1 - p), 1e-12) / values.size)


def _tost(tests: PairedT, margin: float) -> np.ndarray:
    """The paired TOST p of ``tost_paired`` from the paired t's moments (NaN-aware)."""
    df = np.maximum(np.asarray(tests.n) - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(
            scipy.stats.t.sf((np.asarray(tests.mean) + margin) / tests.se, df),
            scipy.stats.t.cdf((np.asarray(tests.mean) - margin) / tests.se, df),
        )


@dataclass(frozen=True)
class Calibration:
    """Rates over simulated sweeps, each with its Monte Carlo standard error ``(rate, se)``."""

    scenario: str
    sweeps: int
    seeds: int
    false_cell_claim: tuple[float, float]  # sweeps with a cell claimed in the wrong direction (or at Δ = 0); with
    # divergence, judged against the healthy runs' Δ (the claims diverged runs at chance would make)
    false_trend_claim: tuple[float, float]  # sweeps with a trend claimed where the true slope is 0 or opposite
    power: tuple[float, float]  # cells with a true Δ ≥ 1 point claimed in the right direction
    coverage: tuple[float, float]  # 95 % t intervals that cover the cell's true Δ
    simultaneous_coverage: tuple[float, float]  # sweeps whose simultaneous intervals cover every cell at once
    trend_power: tuple[float, float] = (float("nan"), float("nan"))  # sweeps claiming every true trend rightly
    sensitivity_flagged: tuple[float, float] = (float("nan"), float("nan"))  # false-claim sweeps whose verdict
    # changes without the diverged runs (the report names them)
    notes: tuple[str, ...] = field(default_factory=tuple)


def calibrate(
    scenario: Scenario,
    *,
    sweeps: int,
    seeds: int,
    rng: np.random.Generator,
    alpha: float = 0.05,
    correction: str = "holm",
    margin: float = 0.01,
) -> Calibration:
    """Simulate ``sweeps`` sweeps of ``scenario`` with ``seeds`` paired seeds and decide each as the report does."""
    treated, baseline, truth, diverged = simulate_runs(scenario, sweeps=sweeps, seeds=seeds, rng=rng)
    arms, n_cells = truth.shape[1], truth.shape[2]
    d = treated - baseline[:, None]  # NaN where a run of the pair is missing: the pair is left out
    tests = paired_t(d)
    tost = _tost(tests, margin)
    flat = (sweeps, arms * n_cells)
    decided = decide_arrays(
        np.reshape(tests.p_greater, flat),
        np.reshape(tests.p_less, flat),
        np.reshape(tost, flat),
        alpha=alpha,
        correction=correction,
        alternative="greater",
    )
    label = decided.label.reshape(sweeps, arms, n_cells)
    supported, reversed_ = label == "supported", label == "not supported"
    wrong = (supported & (truth <= 0)) | (reversed_ & (truth >= 0))  # truth: the healthy runs' Δ
    false_cell = wrong.reshape(sweeps, -1).any(axis=-1)
    power_cells = truth >= 0.01
    power = supported[power_cells] if power_cells.any() else np.array([])

    df = np.maximum(tests.n - 1, 1)
    half = scipy.stats.t.ppf(0.975, df) * tests.se
    if scenario.diverge:  # the estimand scores diverged runs at chance: E[Δ] moves by q·(baseline − chance)
        truth = truth + scenario.diverge * (_baseline_levels(scenario) - scenario.chance)[None, None, :]
    covered = np.abs(tests.mean - truth) <= half
    level = simultaneous_confidence(alpha, correction, arms * n_cells)
    wide = scipy.stats.t.ppf(0.5 + level / 2, df) * tests.se
    all_covered = (np.abs(tests.mean - truth) <= wide).reshape(sweeps, -1).all(axis=-1)

    design, names = design_matrix(scenario.cells)
    beta, se, trend_df = ols_fit(np.asarray(tests.mean)[:, 0, :], design)
    slopes = [names.index(t) for t in ("treated:log2_fraction", "treated:epochs") if t in names]
    true_slopes = np.array([scenario.slope_fraction, scenario.slope_epochs])[: len(slopes)]
    sign = 1.0 if scenario.advantage >= 0 else -1.0
    p_shrinks, p_grows = one_sided_trend_p(beta[:, slopes], se[:, slopes], trend_df, sign)
    claims, _ = trend_claims(p_shrinks, p_grows, alpha=alpha, correction=correction)
    true_claim = np.where(true_slopes * sign < 0, "shrinks", np.where(true_slopes * sign > 0, "grows", ""))
    false_trend = ((claims != "") & (claims != true_claim[None, :])).any(axis=-1)
    real = true_claim != ""
    trend_power = _rate((claims[:, real] == true_claim[None, real]).all(axis=-1)) if real.any() else _nan_rate()

    flagged = _nan_rate()
    if scenario.diverge > 0:
        healthy_d = np.where(diverged[:, None], np.nan, d)
        healthy = paired_t(healthy_d)
        healthy_label = decide_arrays(
            np.reshape(healthy.p_greater, flat),
            np.reshape(healthy.p_less, flat),
            np.reshape(_tost(healthy, margin), flat),
            alpha=alpha,
            correction=correction,
            alternative="greater",
        ).label.reshape(sweeps, arms, n_cells)
        any_diverged: np.ndarray = np.asarray(diverged.any(axis=-1))
        changed = ((label != healthy_label) & (supported | reversed_) & any_diverged[:, None]).reshape(sweeps, -1)
        changed = changed.any(axis=-1)
        flagged = _rate(changed[false_cell]) if false_cell.any() else (0.0, 0.0)
    return Calibration(
        scenario.name,
        sweeps,
        seeds,
        _rate(false_cell),
        _rate(false_trend),
        _rate(power),
        _rate(covered),
        _rate(all_covered),
        trend_power,
        flagged,
    )


SCENARIOS = (
    Scenario("global null, seed effect per cell, unequal variances", baseline_sd=0.02, treated_sd=0.005),
    Scenario("global null, a run missing per cell", missing=1),
    Scenario("no trend, cell-level deviations 1.5 points", advantage=0.0, cell_sd=0.015),
    Scenario(
        "constant +1.5 points, baseline 80 → 97 %",
        advantage=0.015,
        baseline=(0.80, 0.97),
        seed_sd=0.01,
        treated_sd=0.005,
        baseline_sd=0.005,
    ),
    Scenario(
        "shrinking advantage, deviations 1 point",
        advantage=0.06,
        slope_fraction=-0.02,
        slope_epochs=-0.005,
        cell_sd=0.01,
    ),
    Scenario("three arms, large effects (d_z ≥ 2)", advantage=0.06, arms=3, seed_sd=0.03),
    Scenario("null among healthy runs, 25 % of baseline runs diverge", diverge=0.25),
)
