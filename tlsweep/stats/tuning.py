"""Tuning curves: expected best validation score after k of N tuning trials (Tang et al. 2020 U-estimator).

E[max of k trials drawn without replacement] = Σ_i v_(i)·[C(i,k) − C(i−1,k)] / C(N,k) over the ascending
order statistics v_(1..N) — unbiased, unlike the with-replacement V-estimator of Dodge et al. 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import comb

from tlsweep.stats._checks import StatsInputError, as_sample


def u_estimator_weights(n_trials: int) -> np.ndarray:
    """Matrix W (k = 1..N rows × order statistic columns) with E[max of k] = W[k-1] @ sorted(values)."""
    if n_trials < 1:
        raise StatsInputError(f"a tuning curve needs at least 1 trial, but got {n_trials}")
    i = np.arange(1, n_trials + 1)
    rows = []
    for k in range(1, n_trials + 1):
        rows.append((comb(i, k) - comb(i - 1, k)) / comb(n_trials, k))
    return np.array(rows)


def expected_best_curve(values: object, *, mode: str = "max") -> np.ndarray:
    """Expected best score after k = 1..N trials (U-estimator); ``mode`` "min" for lower-is-better scores."""
    if mode not in ("max", "min"):
        raise StatsInputError(f"mode must be 'max' or 'min', but got {mode!r}")
    v = as_sample(values, "tuning values")
    sign = 1.0 if mode == "max" else -1.0
    return sign * (u_estimator_weights(v.size) @ np.sort(sign * v))


@dataclass(frozen=True)
class TuningCurve:
    """Expected best score after k trials with a bootstrap band (percentile, pointwise)."""

    k: np.ndarray
    expected: np.ndarray
    low: np.ndarray
    high: np.ndarray


def tuning_curve(
    values: object, *, rng: np.random.Generator, mode: str = "max", n_resamples: int = 2000, confidence: float = 0.95
) -> TuningCurve:
    """The U-estimator curve with a pointwise percentile bootstrap band over the trials (vectorised)."""
    v = as_sample(values, "tuning values")
    expected = expected_best_curve(v, mode=mode)
    k = np.arange(1, v.size + 1)
    if v.size < 2 or n_resamples <= 0:
        return TuningCurve(k, expected, np.full_like(expected, np.nan), np.full_like(expected, np.nan))
    sign = 1.0 if mode == "max" else -1.0
    resamples = np.sort(sign * rng.choice(v, size=(n_resamples, v.size), replace=True), axis=1)
    curves = sign * (resamples @ u_estimator_weights(v.size).T)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(curves, [tail, 1.0 - tail], axis=0)
    return TuningCurve(k, expected, np.minimum(low, high), np.maximum(low, high))
