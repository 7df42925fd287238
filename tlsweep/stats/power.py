"""How many seeds a test needs: the exact-test floor (can the test reach alpha at all?) and t-test power."""

from __future__ import annotations

import math

import numpy as np

from tlsweep.stats._checks import StatsInputError, check_alternative

MAX_SEEDS = 10_000


def exact_test_floor(n_treated: int, n_baseline: int, *, paired: bool, alternative: str) -> float:
    """The smallest p-value the exact test can give: sign-flip (paired) or Mann–Whitney (unpaired).

    Sign-flip with n pairs: 1/2**n one-sided, 2/2**n two-sided; Mann–Whitney: 1/C(n_a+n_b, n_a) one-sided.
    """
    alternative = check_alternative(alternative)
    sides = 2.0 if alternative == "two-sided" else 1.0
    if paired:
        if n_treated != n_baseline:
            raise StatsInputError(f"paired samples must have equal sizes, got {n_treated} and {n_baseline}")
        if n_treated < 1:
            return 1.0
        return min(1.0, sides / 2.0**n_treated)
    if n_treated < 1 or n_baseline < 1:
        return 1.0
    return min(1.0, sides / math.comb(n_treated + n_baseline, n_treated))


def min_replicates(threshold: float, *, paired: bool, alternative: str) -> int:
    """The smallest n (pairs, or runs per arm when unpaired) whose exact-test floor is ≤ ``threshold``."""
    if not 0 < threshold < 1:
        raise StatsInputError(f"the significance threshold must lie in (0, 1), but got {threshold}")
    for n in range(1, 64):
        if exact_test_floor(n, n, paired=paired, alternative=alternative) <= threshold:
            return n
    raise StatsInputError(f"threshold {threshold} is too small for any exact test with fewer than 64 seeds")


def seeds_for_power(
    effect_size: float, *, alpha: float, power: float = 0.8, paired: bool, alternative: str
) -> int | None:
    """Seeds (pairs, or runs per arm) a t-test needs to detect ``effect_size`` (d_z or d) with ``power``.

    Solved with statsmodels ``TTestPower``/``TTestIndPower``; ``alternative`` is in the direction of the
    effect ("greater" → one-sided). None when the effect is 0 or not finite (no number of seeds suffices).
    """
    from statsmodels.stats.power import TTestIndPower, TTestPower

    alternative = check_alternative(alternative)
    if not np.isfinite(effect_size) or effect_size == 0:
        return None
    size = abs(float(effect_size))
    solver_alternative = "two-sided" if alternative == "two-sided" else "larger"
    solver = TTestPower() if paired else TTestIndPower()
    low = 2

    def power_at(n: float) -> float:
        return float(
            solver.power(effect_size=size, nobs=n, alpha=alpha, alternative=solver_alternative)
            if paired
            else solver.power(effect_size=size, nobs1=n, alpha=alpha, ratio=1.0, alternative=solver_alternative)
        )

    if power_at(low) >= power:
        return low
    high = low
    while power_at(high) < power:
        high *= 2
        if high > MAX_SEEDS:
            return None
    while high - low > 1:  # the power is monotone in n: bisect on integers
        mid = (low + high) // 2
        if power_at(mid) >= power:
            high = mid
        else:
            low = mid
    return high


def paired_t_power(effect_size: float, n: int, *, alpha: float) -> float:
    """Power of the one-sided paired t-test (H1: mean difference > 0) with ``n`` pairs at level ``alpha`` when the
    true standardized difference is ``effect_size`` (d_z = mean/SD of the paired differences): the noncentral t
    tail ``P(T' > t_{1-alpha, n-1})`` with noncentrality ``d_z·√n``."""
    import scipy.stats

    if n < 2:
        return float("nan")
    df = n - 1
    critical = scipy.stats.t.ppf(1 - alpha, df)
    return float(scipy.stats.nct.sf(critical, df, effect_size * math.sqrt(n)))


def detectable_effect(n: int, *, alpha: float, power: float = 0.8) -> float:
    """The smallest d_z (mean / SD of the paired differences) the one-sided paired t-test with ``n`` pairs detects
    with probability ``power`` at level ``alpha`` (the inverse of :func:`paired_t_power` in the effect); inf when
    ``n < 2`` (no t-test)."""
    import scipy.optimize

    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must lie in (0, 1), but got {alpha}")
    if not alpha < power < 1:
        raise StatsInputError(f"power must lie in (alpha, 1), but got {power} (alpha {alpha})")
    if n < 2:
        return float("inf")
    high = 1.0
    while paired_t_power(high, n, alpha=alpha) < power:
        high *= 2
    return float(scipy.optimize.brentq(lambda d: paired_t_power(d, n, alpha=alpha) - power, 0.0, high, xtol=1e-10))


def detectable_difference(sd: float, n: int, *, alpha: float, power: float = 0.8) -> float:
    """The smallest paired mean difference, in the units of ``sd`` (the SD of the paired differences), that the
    one-sided paired t-test with ``n`` pairs detects with ``power`` at ``alpha``: ``detectable_effect · sd``."""
    if not np.isfinite(sd) or sd < 0:
        raise StatsInputError(f"the SD of the paired differences must be finite and ≥ 0, but got {sd}")
    return detectable_effect(n, alpha=alpha, power=power) * float(sd)
