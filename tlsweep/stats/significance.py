"""Significance and equivalence tests of treated − baseline.

Paired tests (one-sample t on the differences, exact sign-flip permutation, paired TOST) are vectorised over the
leading axes — the replicates are on the last axis — so calibration studies can run thousands of simulated cells
at once through the same code the report uses. Unpaired fallbacks: Welch's t, Mann–Whitney U, Welch TOST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from tlsweep.stats._checks import StatsInputError, as_batch, as_sample, check_alternative

EXACT_SIGN_FLIP_MAX_PAIRS = 16  # 2**16 sign patterns; beyond that a Monte-Carlo test with the caller's rng


@dataclass(frozen=True)
class PairedT:
    """Student's t on paired differences, both one-sided p-values (arrays over the leading axes, or floats)."""

    mean: np.ndarray | float
    se: np.ndarray | float
    n: np.ndarray | float  # complete pairs used (NaN differences are missing pairs, left out)
    t: np.ndarray | float
    p_greater: np.ndarray | float  # H1: mean difference > 0
    p_less: np.ndarray | float  # H1: mean difference < 0

    def pvalue(self, alternative: str) -> np.ndarray | float:
        """The p-value for ``alternative`` (two-sided: twice the smaller one-sided p)."""
        if check_alternative(alternative) == "greater":
            return self.p_greater
        if alternative == "less":
            return self.p_less
        return _scalar(np.minimum(2 * np.minimum(self.p_greater, self.p_less), 1.0))


def paired_t(differences: object) -> PairedT:
    """Paired t-tests of mean(d) = 0 in both directions from d ``[..., n]`` (NaN = a missing pair, left out).

    Fewer than two pairs, or differences without variation, give NaN p-values.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim < 1:
        raise StatsInputError("paired_t needs the differences on the last axis, but got a scalar")
    present = np.isfinite(d)
    n = present.sum(axis=-1)
    values = np.where(present, d, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = values.sum(axis=-1) / n
        centred = np.where(present, d - mean[..., None], 0.0)
        var = (centred * centred).sum(axis=-1) / (n - 1)
        scale = np.maximum(np.abs(mean), np.sqrt(np.where(n > 0, (values * values).sum(axis=-1) / n, 0.0)))
        var = np.where((n >= 2) & (var > (1e-12 * scale) ** 2), var, np.nan)
        se = np.sqrt(var / n)
        t = mean / se
        df = np.maximum(n - 1, 1)
        p_greater = scipy.stats.t.sf(t, df)
        p_less = scipy.stats.t.cdf(t, df)
    return PairedT(_scalar(mean), _scalar(se), _scalar(n), _scalar(t), _scalar(p_greater), _scalar(p_less))


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its p-value (scalars, or arrays for batched input)."""

    name: str
    statistic: np.ndarray | float
    pvalue: np.ndarray | float
    df: np.ndarray | float = float("nan")


def paired_t_test(treated: object, baseline: object, *, alternative: str) -> TestResult:
    """Student's t on d = treated − baseline (last axis = seeds). Constant d gives p = NaN (no variance)."""
    alternative = check_alternative(alternative)
    a = as_batch(treated, "treated", min_size=2)
    b = as_batch(baseline, "baseline", min_size=2)
    if a.shape != b.shape:
        raise StatsInputError(f"paired samples must have equal shapes, but got {a.shape} and {b.shape}")
    d = a - b
    n = d.shape[-1]
    sd = np.std(d, axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, np.mean(d, axis=-1) / (sd / np.sqrt(n)), np.nan)
    df = n - 1
    if alternative == "greater":
        p = scipy.stats.t.sf(t, df)
    elif alternative == "less":
        p = scipy.stats.t.cdf(t, df)
    else:
        p = np.minimum(2 * scipy.stats.t.sf(np.abs(t), df), 1.0)
    return TestResult("paired t", _scalar(t), _scalar(p), float(df))


def sign_flip_test(
    differences: object, *, alternative: str, rng: np.random.Generator, n_resamples: int = 9999
) -> TestResult:
    """Sign-flip permutation test of mean(d) = 0 (``scipy.stats.permutation_test``, permutation_type="samples").

    Exact (all 2**n sign patterns) up to ``EXACT_SIGN_FLIP_MAX_PAIRS`` pairs, Monte Carlo with ``rng`` beyond.
    """
    alternative = check_alternative(alternative)
    result, name = _permute_signs(as_batch(differences, "differences", min_size=1), alternative, rng, n_resamples)
    return TestResult(name, _scalar(result.statistic), _scalar(result.pvalue))


def _permute_signs(d: np.ndarray, alternative: str, rng: np.random.Generator, n_resamples: int) -> tuple[Any, str]:
    """``scipy.stats.permutation_test`` of mean(d) over sign flips on the last axis, and the test's name."""
    exact = d.shape[-1] <= EXACT_SIGN_FLIP_MAX_PAIRS
    result = scipy.stats.permutation_test(
        (d,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if exact else n_resamples,
        alternative=alternative,
        axis=-1,
        rng=rng,
    )
    return result, "exact sign-flip" if exact else f"sign-flip ({n_resamples} random flips)"


def sign_flip_pvalues(
    differences: object, *, rng: np.random.Generator, n_resamples: int = 9999
) -> dict[str, TestResult]:
    """``sign_flip_test`` for all three alternatives from one permutation distribution (1-D differences): the same
    p-values as three calls, at a third of the cost."""
    d = as_sample(differences, "differences")
    exact = d.size <= EXACT_SIGN_FLIP_MAX_PAIRS
    result, name = _permute_signs(d, "greater", rng, n_resamples)
    null = np.asarray(result.null_distribution)
    observed = float(result.statistic)
    gamma = abs(np.finfo(float).eps * 100 * observed)  # scipy's tolerance for ties
    adjustment = 0 if exact else 1
    greater = (np.count_nonzero(null >= observed - gamma) + adjustment) / (null.size + adjustment)
    less = (np.count_nonzero(null <= observed + gamma) + adjustment) / (null.size + adjustment)
    return {
        "greater": TestResult(name, observed, float(greater)),
        "less": TestResult(name, observed, float(less)),
        "two-sided": TestResult(name, observed, float(min(2 * min(greater, less), 1.0))),
    }


def tost_paired(treated: object, baseline: object, *, margin: float) -> TestResult:
    """Two one-sided paired t-tests of −margin < mean(d) < margin; p is the larger one-sided p (vectorised)."""
    if not margin > 0:
        raise StatsInputError(f"the equivalence margin must be > 0, but got {margin}")
    a = as_batch(treated, "treated", min_size=2)
    b = as_batch(baseline, "baseline", min_size=2)
    if a.shape != b.shape:
        raise StatsInputError(f"paired samples must have equal shapes, but got {a.shape} and {b.shape}")
    lower = paired_t_test(a, b + (-margin), alternative="greater")
    upper = paired_t_test(a, b + margin, alternative="less")
    p = np.maximum(lower.pvalue, upper.pvalue)
    t = np.minimum(np.asarray(lower.statistic), -np.asarray(upper.statistic))
    return TestResult("paired TOST", _scalar(t), _scalar(p), lower.df)


def welch_t_test(treated: object, baseline: object, *, alternative: str) -> TestResult:
    """Welch's unequal-variance t-test (unpaired fallback)."""
    alternative = check_alternative(alternative)
    a = as_sample(treated, "treated", min_size=2)
    b = as_sample(baseline, "baseline", min_size=2)
    result = scipy.stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return TestResult("Welch t", float(result.statistic), float(result.pvalue), float(result.df))


def mann_whitney_test(treated: object, baseline: object, *, alternative: str) -> TestResult:
    """Mann–Whitney U (exact for small samples without ties), the unpaired robustness check."""
    alternative = check_alternative(alternative)
    a = as_sample(treated, "treated")
    b = as_sample(baseline, "baseline")
    result = scipy.stats.mannwhitneyu(a, b, alternative=alternative, method="auto")
    return TestResult("Mann–Whitney U", float(result.statistic), float(result.pvalue))


def tost_unpaired(treated: object, baseline: object, *, margin: float) -> TestResult:
    """Welch TOST of −margin < mean_a − mean_b < margin (``statsmodels ttost_ind``, usevar="unequal")."""
    from statsmodels.stats.weightstats import ttost_ind

    if not margin > 0:
        raise StatsInputError(f"the equivalence margin must be > 0, but got {margin}")
    a = as_sample(treated, "treated", min_size=2)
    b = as_sample(baseline, "baseline", min_size=2)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return TestResult("Welch TOST", float("nan"), float("nan"))
    pvalue, lower, upper = ttost_ind(a, b, -margin, margin, usevar="unequal")
    return TestResult("Welch TOST", float(min(lower[0], -upper[0])), float(pvalue), float(lower[2]))


def _scalar(value: object) -> np.ndarray | float:
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else array
