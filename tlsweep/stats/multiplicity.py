"""Adjusted p-values for a family of tests: Holm, Bonferroni, Benjamini–Hochberg, none.

Vectorised over leading axes (the family is the last axis) so calibration studies can adjust thousands of
simulated families at once; NaN p-values are treated as 1 (a test that could not be run rejects nothing) and stay
NaN in the output.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.stats

from tlsweep.stats._checks import StatsInputError

Correction = Literal["holm", "bonferroni", "bh", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "bh", "none")


def adjust_pvalues(pvalues: object, method: str) -> np.ndarray:
    """Adjusted p-values over the last axis; ``method`` is holm | bonferroni | bh | none."""
    if method not in CORRECTIONS:
        raise StatsInputError(f"correction must be one of {CORRECTIONS}, but got {method!r}")
    p = np.asarray(pvalues, dtype=float)
    if p.ndim == 0:
        raise StatsInputError("adjust_pvalues needs an array of p-values (the family on the last axis)")
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise StatsInputError(f"p-values must lie in [0, 1], but got {p[finite & ((p < 0) | (p > 1))][:5]}")
    filled = np.where(finite, p, 1.0)
    m = p.shape[-1]
    if m == 0 or method == "none":
        adjusted = filled
    elif method == "bonferroni":
        adjusted = np.minimum(filled * m, 1.0)
    elif method == "holm":
        order = np.argsort(filled, axis=-1, kind="stable")
        ranked = np.take_along_axis(filled, order, axis=-1) * (m - np.arange(m))
        ranked = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
        adjusted = np.empty_like(ranked)
        np.put_along_axis(adjusted, order, ranked, axis=-1)
    else:
        adjusted = scipy.stats.false_discovery_control(filled, axis=-1, method="bh")
    return np.where(finite, adjusted, np.nan)
