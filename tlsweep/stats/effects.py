"""Effect sizes and their confidence intervals (treated − baseline).

Means and differences get t intervals (paired t on the seed differences, Welch for unpaired runs): the interval of
the test that decides, which covers at n = 5–8 where a bootstrap does not (BCa covers ~0.86 at n = 8). The ratio of
means gets Fieller's interval from the same t distribution. The probability of improvement gets a bootstrap
interval only from ``BOOTSTRAP_MIN_N`` replicates on. Every resampling takes an explicit
``rng: numpy.random.Generator``; bootstrap intervals are BCa (``scipy.stats.bootstrap``) with a percentile fallback
for degenerate data; ``Interval.method`` says which method was used.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats

from tlsweep.stats._checks import StatsInputError, as_pair, as_sample

BOOTSTRAP_MIN_N = 20  # below this a bootstrap interval under-covers; the interval is not computed


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; NaN bounds when it could not be computed (see ``method``)."""

    estimate: float
    low: float
    high: float
    method: str  # "BCa" | "percentile" | "constant" | "not computed: <why>"


def _not_computed(estimate: float, why: str) -> Interval:
    return Interval(float(estimate), float("nan"), float("nan"), f"not computed: {why}")


def bootstrap_interval(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    paired: bool,
    rng: np.random.Generator,
    n_resamples: int = 9999,
    confidence: float = 0.95,
) -> Interval:
    """Bootstrap CI of ``statistic(*samples, axis=-1)`` (vectorised); BCa with a percentile fallback.

    ``paired=True`` resamples positions jointly (the seeds), otherwise each sample independently.
    """
    if not isinstance(rng, np.random.Generator):
        raise StatsInputError(f"rng must be a numpy.random.Generator, but got {type(rng).__name__}")
    estimate = float(statistic(*samples, axis=-1))
    if n_resamples <= 0:
        return _not_computed(estimate, "bootstrap disabled (n_resamples=0)")
    if min(s.size for s in samples) < 2:
        return _not_computed(estimate, "fewer than 2 replicates")
    if not np.isfinite(estimate):
        return _not_computed(estimate, "the estimate is not finite")
    if _jackknife_is_constant(samples, statistic, estimate, paired):
        return Interval(estimate, estimate, estimate, "constant")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                result = scipy.stats.bootstrap(
                    samples,
                    statistic,
                    paired=paired,
                    vectorized=True,
                    n_resamples=n_resamples,
                    confidence_level=confidence,
                    method=method,
                    rng=rng,
                )
            except (scipy.stats.DegenerateDataWarning, ValueError, ZeroDivisionError):
                continue
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return Interval(estimate, low, high, method)
    return _not_computed(estimate, "the bootstrap distribution is degenerate")


def _jackknife_is_constant(
    samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], estimate: float, paired: bool
) -> bool:
    """True when leaving out any one replicate leaves the statistic unchanged (e.g. identical differences)."""
    if paired:
        values = [statistic(*(np.delete(s, i) for s in samples), axis=-1) for i in range(samples[0].size)]
    else:
        values = [
            statistic(*(np.delete(s, i) if j == k else s for k, s in enumerate(samples)), axis=-1)
            for j, sample in enumerate(samples)
            for i in range(sample.size)
        ]
    return bool(np.allclose(values, estimate, rtol=1e-9, atol=1e-12))


def _t_bounds(estimate: float, se: float, df: float, confidence: float, method: str) -> Interval:
    if not 0 < confidence < 1:
        raise StatsInputError(f"confidence must lie in (0, 1), but got {confidence}")
    if not np.isfinite(estimate):
        return _not_computed(estimate, "the estimate is not finite")
    if not df >= 1 or not np.isfinite(se):
        return _not_computed(estimate, "fewer than 2 replicates")
    if se == 0:
        return Interval(estimate, estimate, estimate, "constant")
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(estimate, estimate - half, estimate + half, method)


def mean_interval(values: object, *, confidence: float = 0.95) -> Interval:
    """The mean of one sample with its t interval (per-arm ribbons)."""
    x = as_sample(values, "values")
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size >= 2 else float("nan")
    return _t_bounds(float(np.mean(x)), se, x.size - 1, confidence, "t")


def mean_difference(treated: object, baseline: object, *, paired: bool, confidence: float = 0.95) -> Interval:
    """mean(treated) − mean(baseline) with the t interval of its test: paired t on the seed differences, else
    Welch's (Welch–Satterthwaite df)."""
    a, b = _samples(treated, baseline, paired)
    estimate = float(np.mean(a) - np.mean(b))
    if paired:
        d = a - b
        se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size >= 2 else float("nan")
        return _t_bounds(estimate, se, d.size - 1, confidence, "paired t")
    if a.size < 2 or b.size < 2:
        return _not_computed(estimate, "fewer than 2 runs in an arm")
    va, vb = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = float((va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)))
    return _t_bounds(estimate, se, df if np.isfinite(df) else a.size + b.size - 2, confidence, "Welch t")


def ratio_of_means(treated: object, baseline: object, *, paired: bool, confidence: float = 0.95) -> Interval:
    """mean(treated) / mean(baseline) with Fieller's interval (t quantile, the df of the difference's test); not
    computed when the baseline mean is not clearly above 0 (the interval would be unbounded)."""
    a, b = _samples(treated, baseline, paired)
    if np.mean(b) == 0:
        return _not_computed(float("nan"), "the baseline mean is 0")
    if np.any(b <= 0) or np.any(a < 0):
        return _not_computed(float(np.mean(a) / np.mean(b)), "a ratio needs positive values")
    ma, mb = float(np.mean(a)), float(np.mean(b))
    estimate = ma / mb
    if min(a.size, b.size) < 2:
        return _not_computed(estimate, "fewer than 2 replicates")
    va, vb = float(np.var(a, ddof=1) / a.size), float(np.var(b, ddof=1) / b.size)
    cab = float(np.cov(a, b, ddof=1)[0, 1] / a.size) if paired else 0.0
    df = a.size - 1 if paired else min(a.size, b.size) - 1
    t2 = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) ** 2
    qa, qb, qc = mb * mb - t2 * vb, ma * mb - t2 * cab, ma * ma - t2 * va
    disc = qb * qb - qa * qc
    if qa <= 0 or disc < 0:
        return _not_computed(estimate, "the baseline mean is too uncertain for a bounded ratio interval")
    root = float(np.sqrt(disc))
    return Interval(estimate, (qb - root) / qa, (qb + root) / qa, "Fieller")


def _auc(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a = np.moveaxis(a, axis, -1)[..., :, None]
    b = np.moveaxis(b, axis, -1)[..., None, :]
    return np.mean((a > b) + 0.5 * (a == b), axis=(-2, -1))


def probability_of_improvement(
    treated: object,
    baseline: object,
    *,
    paired: bool,
    rng: np.random.Generator,
    n_resamples: int = 9999,
    confidence: float = 0.95,
) -> Interval:
    """P(treated > baseline) + ½·P(tie) over all treated × baseline runs (Mann–Whitney AUC), with a bootstrap CI
    from ``BOOTSTRAP_MIN_N`` replicates on (below, the estimate alone: a bootstrap would under-cover).

    This is rliable's probability of improvement; the CI resamples seeds jointly when ``paired``. For a
    "lower is better" metric pass the samples swapped.
    """
    a, b = _samples(treated, baseline, paired)
    if min(a.size, b.size) < BOOTSTRAP_MIN_N:
        return _not_computed(float(_auc(a, b)), f"fewer than {BOOTSTRAP_MIN_N} replicates for a bootstrap interval")
    return bootstrap_interval((a, b), _auc, paired=paired, rng=rng, n_resamples=n_resamples, confidence=confidence)


def cohens_dz(treated: object, baseline: object) -> float:
    """Standardised mean of the paired differences, mean(d)/sd(d); NaN for n < 2, ±inf for constant d ≠ 0."""
    a, b = as_pair(treated, baseline)
    d = a - b
    if d.size < 2:
        return float("nan")
    sd = np.std(d, ddof=1)
    if sd == 0:
        return 0.0 if np.mean(d) == 0 else float(np.sign(np.mean(d)) * np.inf)
    return float(np.mean(d) / sd)


def hedges_g(treated: object, baseline: object) -> float:
    """(mean_a − mean_b)/pooled SD × (1 − 3/(4(n_a+n_b) − 9)), the small-sample corrected Cohen's d."""
    a = as_sample(treated, "treated")
    b = as_sample(baseline, "baseline")
    n_a, n_b = a.size, b.size
    if n_a < 2 or n_b < 2:
        return float("nan")
    pooled = np.sqrt(((n_a - 1) * np.var(a, ddof=1) + (n_b - 1) * np.var(b, ddof=1)) / (n_a + n_b - 2))
    diff = np.mean(a) - np.mean(b)
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    correction = 1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0)
    return float(diff / pooled * correction)


def _samples(treated: object, baseline: object, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    if paired:
        return as_pair(treated, baseline)
    return as_sample(treated, "treated"), as_sample(baseline, "baseline")
