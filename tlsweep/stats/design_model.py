"""A model of the whole design: how the treated − baseline advantage changes with data size and epochs.

``response ~ treated * (log2_fraction + epochs) + other factors`` with the continuous terms centred, so
``treated`` is the advantage at the average design point and ``treated:log2_fraction`` its change per doubling
of the training data. Accuracy-like metrics are modelled on the logit scale (as Kornblith et al.); the logit
coefficients are turned into points at the mean accuracy (×p̄(1−p̄)×100). Seed enters as a random intercept
(``statsmodels mixedlm``); when that fit fails or is singular the model falls back to OLS with seed fixed
effects, and ``method`` says which was used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tlsweep.stats._checks import StatsInputError

TERMS_OF_INTEREST = ("treated", "treated:log2_fraction", "treated:epochs")


@dataclass(frozen=True)
class DesignModel:
    method: str  # "mixedlm (seed random intercept)" | "OLS (seed fixed effects)" | "not fitted: <why>"
    scale: str  # "logit" | "identity"
    formula: str
    coefficients: pd.DataFrame  # term, estimate, ci_low, ci_high, p, and points columns (per unit of the term)
    mean_level: float  # mean response on the original scale
    n_obs: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fitted(self) -> bool:
        return not self.method.startswith("not fitted")


def _empty(why: str, scale: str) -> DesignModel:
    columns = ["term", "estimate", "ci_low", "ci_high", "p", "points", "points_low", "points_high"]
    return DesignModel(f"not fitted: {why}", scale, "", pd.DataFrame(columns=columns), float("nan"), 0)


def fit_design_model(
    frame: pd.DataFrame, *, logit: bool, points_per_unit: float = 100.0, extra_factors: tuple[str, ...] = ()
) -> DesignModel:
    """Fit the design model on ``frame`` (columns value, treated ∈ {0,1}, log2_fraction, epochs, seed, extras).

    ``points_per_unit`` converts the response scale to reported points (100 for accuracies in [0, 1]).
    """
    import statsmodels.formula.api as smf

    scale = "logit" if logit else "identity"
    required = {"value", "treated", "log2_fraction", "epochs", "seed", *extra_factors}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise StatsInputError(f"the design-model frame lacks column(s) {missing}")
    data = frame.dropna(subset=["value"]).copy()
    if data.empty or data["treated"].nunique() < 2:
        return _empty("both arms need usable runs", scale)
    mean_level = float(data["value"].mean())
    if logit:
        eps = 1e-3
        clipped = data["value"].clip(eps, 1 - eps)
        data["response"] = np.log(clipped / (1 - clipped))
        slope = mean_level * (1 - mean_level) * points_per_unit
    else:
        data["response"] = data["value"]
        slope = points_per_unit
    varying = [name for name in ("log2_fraction", "epochs") if data[name].nunique() > 1]
    for name in varying:
        data[name] = data[name] - data[name].mean()
    factors = [name for name in extra_factors if data[name].nunique() > 1]
    rhs = "treated" if not varying else f"treated * ({' + '.join(varying)})"
    rhs += "".join(f" + C({name})" for name in factors)
    formula = f"response ~ {rhs}"
    notes: list[str] = []
    if not varying:
        notes.append("neither train_fraction nor epochs varies, so the model has no interaction terms")
    n_seeds = data["seed"].nunique()
    result, method = None, ""
    if n_seeds >= 3:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit = smf.mixedlm(formula, data, groups=data["seed"]).fit(reml=True)
            seed_var = float(np.asarray(fit.cov_re)[0, 0])
            if not fit.converged or not np.all(np.isfinite(fit.bse.reindex(fit.fe_params.index))):
                raise ValueError("the fit did not converge")
            if not seed_var > 1e-8 * max(float(fit.scale), 1e-12):
                raise ValueError("the seed variance is estimated at 0 (singular fit)")
            result, method = fit, "mixedlm (seed random intercept)"
            if any("boundary" in str(w.message) for w in caught):
                notes.append(
                    f"statsmodels warns the seed variance ({seed_var:.3g}) may be near the boundary; "
                    "the mixed-model estimates are kept"
                )
        except Exception as exc:  # noqa: BLE001 — any failure of the mixed model means: use the fallback
            notes.append(f"the mixed model failed ({str(exc)[:90]}); used OLS with seed fixed effects instead")
    else:
        notes.append(f"only {n_seeds} seed(s): a seed random effect cannot be estimated; used OLS")
    if result is None:
        seed_term = " + C(seed)" if n_seeds > 1 else ""
        formula = formula + seed_term
        if len(data) <= 2 + 2 * len(varying) + len(factors) + n_seeds:
            return _empty(f"too few observations ({len(data)}) for {formula}", scale)
        result = smf.ols(formula, data).fit()
        method = "OLS (seed fixed effects)" if n_seeds > 1 else "OLS"
    params = result.fe_params if hasattr(result, "fe_params") else result.params
    ci = result.conf_int().reindex(params.index)
    pvalues = result.pvalues.reindex(params.index)
    rows = []
    for term in params.index:
        if term == "Intercept" or term.startswith("C(seed)") or term == "Group Var":
            continue
        estimate, low, high = float(params[term]), float(ci.loc[term, 0]), float(ci.loc[term, 1])
        rows.append(
            {
                "term": term,
                "estimate": estimate,
                "ci_low": low,
                "ci_high": high,
                "p": float(pvalues[term]),
                "points": estimate * slope,
                "points_low": low * slope,
                "points_high": high * slope,
            }
        )
    return DesignModel(method, scale, formula, pd.DataFrame(rows), mean_level, len(data), tuple(notes))


TREND_TERMS = ("treated:log2_fraction", "treated:epochs")


@dataclass(frozen=True)
class TrendTest:
    """One-sided test that the treated − baseline advantage shrinks along one axis of the design."""

    term: str  # "treated:log2_fraction" | "treated:epochs"
    points: float  # change of the advantage per unit of the term (per doubling of data, per epoch), in points
    points_low: float
    points_high: float
    p_one_sided: float  # H1: the coefficient has the sign that shrinks the advantage
    p_adjusted: float  # corrected within the trend family
    shrinks: bool  # p_adjusted ≤ alpha


def trend_tests(model: DesignModel, *, advantage_sign: float, alpha: float, correction: str) -> list[TrendTest]:
    """One-sided tests on the interaction terms of the design model, corrected within their own family.

    The hypothesis predicts that the advantage (sign ``advantage_sign``: +1 when the treated arm is expected above
    the baseline, −1 below) shrinks as data and epochs grow, i.e. that ``treated:log2_fraction`` and
    ``treated:epochs`` have the sign opposite to ``advantage_sign``. The model's two-sided Wald p-values are
    symmetric, so the one-sided p is p/2 when the estimate points the predicted way and 1 − p/2 otherwise.
    Terms the design does not vary are absent from the result.
    """
    from tlsweep.stats.multiplicity import adjust_pvalues

    if advantage_sign == 0 or not np.isfinite(advantage_sign):
        raise StatsInputError(f"advantage_sign must be +1 or -1, but got {advantage_sign}")
    if not model.fitted or model.coefficients.empty:
        return []
    table = model.coefficients.set_index("term")
    terms = [term for term in TREND_TERMS if term in table.index]
    if not terms:
        return []
    one_sided = []
    for term in terms:
        estimate, p = float(table.loc[term, "estimate"]), float(table.loc[term, "p"])
        predicted = estimate * advantage_sign < 0
        one_sided.append(p / 2 if predicted else 1 - p / 2)
    adjusted = adjust_pvalues(np.array(one_sided), correction)
    return [
        TrendTest(
            term,
            float(table.loc[term, "points"]),
            float(table.loc[term, "points_low"]),
            float(table.loc[term, "points_high"]),
            p,
            float(q),
            bool(q <= alpha),
        )
        for term, p, q in zip(terms, one_sided, adjusted, strict=True)
    ]
