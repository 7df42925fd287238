"""Does the advantage shrink as data and epochs grow? A trend model with the cell as the unit of replication.

The question is how the per-cell advantage Δ_c (the mean paired difference treated − baseline of cell c) varies
over the cells, so the cells are the replicates: ordinary least squares of Δ_c on the centred log2 train fraction,
the centred epochs and any other factor, with df = cells − parameters. Seeds only sharpen each Δ_c; a cell-level
deviation of the advantage lands in the residual, where it belongs, instead of passing for a trend (a model with
the seed as the unit lets them pass). Everything is on the metric's own
scale (points for accuracies), so a constant advantage near a ceiling is no trend; the slopes are the average
change of the advantage per doubling of the data and per epoch.

Each slope gets two one-sided t-tests (the advantage shrinks / grows), and all of them form one family corrected
at alpha, so a false trend claim in either direction happens in at most alpha of sweeps. With fewer than
``MIN_TREND_DF`` residual df the model is not fitted: the design has too few cells for a trend test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from tlsweep.stats._checks import StatsInputError
from tlsweep.stats.multiplicity import adjust_pvalues

MIN_TREND_DF = 2
TREND_AXES = ("log2_fraction", "epochs")  # the cell columns whose slopes are tested
TREND_TERMS = ("treated:log2_fraction", "treated:epochs")  # their terms: the advantage's change along each axis
CENTRE = "treated"  # the intercept: the mean advantage at the design's average point


@dataclass(frozen=True)
class TrendModel:
    method: str  # "OLS on cell means" | "not fitted: <why>"
    formula: str
    coefficients: pd.DataFrame  # term, estimate, se, ci_low, ci_high, p (two-sided), in the metric's units
    n_cells: int
    df: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fitted(self) -> bool:
        return not self.method.startswith("not fitted")


def _empty(why: str, n_cells: int, df: int = 0) -> TrendModel:
    columns = ["term", "estimate", "se", "ci_low", "ci_high", "p"]
    return TrendModel(f"not fitted: {why}", "", pd.DataFrame(columns=columns), n_cells, df)


def design_matrix(cells: pd.DataFrame, extra_factors: tuple[str, ...] = ()) -> tuple[np.ndarray, list[str]]:
    """The cell-level design: intercept, the centred slopes that vary, and treatment-coded other factors."""
    columns, names = [np.ones(len(cells))], [CENTRE]
    for name in TREND_AXES:
        values = cells[name].astype(float).to_numpy()
        if np.unique(values).size > 1:
            columns.append(values - values.mean())
            names.append(f"treated:{name}")
    for name in extra_factors:
        levels = sorted(cells[name].astype(str).unique())
        for level in levels[1:]:
            columns.append((cells[name].astype(str) == level).to_numpy(dtype=float))
            names.append(f"{name}[{level}]")
    return np.column_stack(columns), names


def ols_fit(deltas: object, design: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(coefficients, standard errors, residual df) of deltas ``[..., C]`` on design ``[C, p]`` (vectorised)."""
    y = np.asarray(deltas, dtype=float)
    n, p = design.shape
    if y.shape[-1] != n:
        raise StatsInputError(f"deltas have {y.shape[-1]} cells, the design {n}")
    df = n - p
    xtx_inv = np.linalg.pinv(design.T @ design)
    beta = y @ (xtx_inv @ design.T).T
    resid = y - beta @ design.T
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = (resid * resid).sum(axis=-1) / df if df > 0 else np.full(y.shape[:-1], np.nan)
    se = np.sqrt(np.asarray(sigma2)[..., None] * np.diag(xtx_inv))
    return beta, se, df


def fit_cell_trend(cells: pd.DataFrame, *, extra_factors: tuple[str, ...] = (), confidence: float = 0.95) -> TrendModel:
    """Fit the trend model on one row per cell (columns ``delta``, ``log2_fraction``, ``epochs`` and the extras)."""
    missing = sorted({"delta", *TREND_AXES, *extra_factors} - set(cells.columns))
    if missing:
        raise StatsInputError(f"the cell frame lacks column(s) {missing}")
    data = cells.dropna(subset=["delta"]).reset_index(drop=True)
    factors = tuple(name for name in extra_factors if data[name].nunique() > 1)
    design, names = design_matrix(data, factors) if len(data) else (np.ones((0, 1)), [CENTRE])
    slopes = [name for name in names if name in TREND_TERMS]
    formula = "Δ_cell ~ " + " + ".join(
        ["1", *(s.removeprefix("treated:") for s in slopes), *(f"C({f})" for f in factors)]
    )
    df = len(data) - design.shape[1]
    if not slopes:
        return _empty("neither train_fraction nor epochs varies over the cells", len(data), df)
    if df < MIN_TREND_DF:
        return _empty(
            f"too few cells for a trend test: {len(data)} cells and {design.shape[1]} parameters leave {max(df, 0)} "
            f"residual df (at least {MIN_TREND_DF} needed; add levels of train_fraction or epochs)",
            len(data),
            df,
        )
    beta, se, df = ols_fit(data["delta"].to_numpy(dtype=float), design)
    t = beta / se
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) * se
    p = np.minimum(2 * scipy.stats.t.sf(np.abs(t), df), 1.0)
    table = pd.DataFrame(
        {"term": names, "estimate": beta, "se": se, "ci_low": beta - half, "ci_high": beta + half, "p": p}
    )
    return TrendModel(f"OLS on cell means ({len(data)} cells, {df} residual df)", formula, table, len(data), df)


@dataclass(frozen=True)
class TrendTest:
    """Whether the advantage shrinks or grows along one axis of the design (one family for both directions)."""

    term: str  # "treated:log2_fraction" | "treated:epochs"
    points: float  # change of the advantage per unit of the term (per doubling of data, per epoch), metric units
    points_low: float
    points_high: float
    p_shrinks: float  # one-sided: the advantage moves toward 0 along the term
    p_grows: float
    p_adjusted: float  # the smaller of the two directions' p-values, adjusted within the trend family
    claim: str  # "shrinks" | "grows" | "" (nothing significant)

    @property
    def shrinks(self) -> bool:
        return self.claim == "shrinks"


def one_sided_trend_p(estimate: object, se: object, df: int, advantage_sign: float) -> tuple[np.ndarray, np.ndarray]:
    """(p shrinks, p grows): one-sided t-tests that a slope has the sign opposite to / the same as the advantage."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.asarray(estimate, dtype=float) / np.asarray(se, dtype=float) * np.sign(advantage_sign)
    return scipy.stats.t.cdf(t, df), scipy.stats.t.sf(t, df)


def trend_claims(
    p_shrinks: np.ndarray, p_grows: np.ndarray, *, alpha: float, correction: str
) -> tuple[np.ndarray, np.ndarray]:
    """(claim per term, adjusted p per term) from the one-sided p-values ``[..., terms]`` (vectorised)."""
    k = p_shrinks.shape[-1]
    both = np.concatenate([p_shrinks, p_grows], axis=-1)
    adjusted = adjust_pvalues(np.where(np.isfinite(both), both, 1.0), "holm" if correction == "none" else correction)
    shrink_adj, grow_adj = adjusted[..., :k], adjusted[..., k:]
    claim = np.where(shrink_adj <= alpha, "shrinks", np.where(grow_adj <= alpha, "grows", "")).astype(object)
    return claim, np.minimum(shrink_adj, grow_adj)


def trend_tests(model: TrendModel, *, advantage_sign: float, alpha: float, correction: str) -> list[TrendTest]:
    """The trend family of a fitted model: for each slope, "shrinks" and "grows" (toward / away from 0, given the
    sign of the advantage: +1 when treated is expected above baseline, −1 below), one family at alpha."""
    if advantage_sign == 0 or not np.isfinite(advantage_sign):
        raise StatsInputError(f"advantage_sign must be +1 or -1, but got {advantage_sign}")
    if not model.fitted:
        return []
    table = model.coefficients.set_index("term")
    terms = [term for term in TREND_TERMS if term in table.index]
    estimate = table.loc[terms, "estimate"].to_numpy(dtype=float)
    p_shrinks, p_grows = one_sided_trend_p(
        estimate, table.loc[terms, "se"].to_numpy(dtype=float), model.df, advantage_sign
    )
    claim, adjusted = trend_claims(p_shrinks, p_grows, alpha=alpha, correction=correction)
    return [
        TrendTest(
            term,
            float(table.loc[term, "estimate"]),
            float(table.loc[term, "ci_low"]),
            float(table.loc[term, "ci_high"]),
            float(ps),
            float(pg),
            float(q),
            str(c),
        )
        for term, ps, pg, q, c in zip(terms, p_shrinks, p_grows, adjusted, claim, strict=True)
    ]
