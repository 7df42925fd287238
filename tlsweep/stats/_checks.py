"""Input checks shared by the statistical functions: shapes, NaNs and the alternative keyword."""

from __future__ import annotations

from typing import Literal

import numpy as np

from tlsweep.errors import TlsweepError

Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES: tuple[str, ...] = ("greater", "less", "two-sided")


class StatsInputError(TlsweepError, ValueError):
    """A statistical function got input of the wrong shape, with NaNs, or with too few values."""


def check_alternative(alternative: str) -> Alternative:
    if alternative not in ALTERNATIVES:
        raise StatsInputError(f"alternative must be one of {ALTERNATIVES}, but got {alternative!r}")
    return alternative  # type: ignore[return-value]


def as_sample(values: object, name: str, *, min_size: int = 1) -> np.ndarray:
    """A 1-D float array without NaN/inf and with at least ``min_size`` values, or a clear error."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise StatsInputError(f"{name} must be 1-D, but got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array)).tolist()
        raise StatsInputError(f"{name} holds NaN or infinite values at positions {bad}; drop them first")
    if array.size < min_size:
        raise StatsInputError(f"{name} needs at least {min_size} value(s), but got {array.size}")
    return array


def as_pair(treated: object, baseline: object, *, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two paired 1-D samples of equal length (position i of each belongs to the same seed)."""
    a = as_sample(treated, "treated", min_size=min_size)
    b = as_sample(baseline, "baseline", min_size=min_size)
    if a.shape != b.shape:
        raise StatsInputError(
            f"paired samples must have equal length, but got treated={a.size} and baseline={b.size} values"
        )
    return a, b


def as_batch(values: object, name: str, *, min_size: int = 1) -> np.ndarray:
    """An array of shape (..., n) without NaN/inf whose last axis holds the replicates."""
    array = np.asarray(values, dtype=float)
    if array.ndim < 1:
        raise StatsInputError(f"{name} must have at least one axis (the replicates), but got a scalar")
    if not np.all(np.isfinite(array)):
        raise StatsInputError(f"{name} holds NaN or infinite values; drop them first")
    if array.shape[-1] < min_size:
        raise StatsInputError(f"{name} needs at least {min_size} replicate(s) on its last axis, got {array.shape}")
    return array
