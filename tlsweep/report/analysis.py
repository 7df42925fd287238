"""Run the statistics of the report on loaded results: per-cell families, the design model, tuning, attrition."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlsweep.design import (
    cell_id as design_cell_id,
)
from tlsweep.design import (
    confirm_differences,
    confirm_outcome,
    primary_config_kind,
    sequential_design,
)
from tlsweep.report.load import Hypothesis, Results, is_accuracy_like
from tlsweep.stats import (
    Contrast,
    Decision,
    DesignModel,
    TrendTest,
    TuningCurve,
    compare_arms,
    decide_family,
    fit_design_model,
    gate_alpha,
    trend_tests,
    tuning_curve,
)
from tlsweep.stats.sequential import look_pvalues

PRIMARY_KIND = "best"
SECONDARY_KIND = "recipe"


@dataclass(frozen=True)
class CellResult:
    cell_id: str
    levels: dict[str, Any]  # factor → level (train_fraction, epochs, ...)
    contrast: Contrast
    decision: Decision


@dataclass(frozen=True)
class Family:
    config_kind: str  # "best" (primary, equal budget) | "recipe" (secondary, fixed recipe)
    correction: str
    gate: float
    cells: list[CellResult]
    sequential: str = ""  # adaptive confirm seeds: how the group-sequential test decided (else "")


@dataclass(frozen=True)
class TuningCell:
    cell_id: str
    levels: dict[str, Any]
    arm: str
    values: np.ndarray  # objective per tuning trial, in tune_index order (diverged → chance)
    recipe_value: float  # tune_index 0
    curve: TuningCurve | None


@dataclass
class ComparisonAnalysis:
    """The statistics of one comparison: its share of the families, its design model and trend tests."""

    hypothesis: Hypothesis
    primary: Family | None
    secondary: Family | None
    model: DesignModel | None
    trends: list[TrendTest] = field(default_factory=list)


@dataclass
class Analysis:
    primary: Family | None  # the first comparison's (``comparisons[0]``)
    secondary: Family | None
    model: DesignModel | None
    tuning: list[TuningCell]  # every compared arm
    attrition: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    trends: list[TrendTest] = field(default_factory=list)  # one-sided tests that the advantage shrinks
    comparisons: list[ComparisonAnalysis] = field(default_factory=list)  # one per comparison, in spec order


def cell_levels(results: Results) -> dict[str, dict[str, Any]]:
    """cell_id → {factor: level}, sorted by the levels (numeric factors ascending)."""
    trials = results.trials
    levels: dict[str, dict[str, Any]] = {}
    for cell_id, rows in trials.groupby("cell_id", sort=False):
        preferred = rows[rows["arm"] == results.hypothesis.treated]
        source = preferred if not preferred.empty else rows
        levels[str(cell_id)] = {name: _first_level(source[name]) for name in results.cell_factors}
    return dict(sorted(levels.items(), key=lambda item: _sort_key(item[1], results.cell_factors)))


def _first_level(column: pd.Series) -> Any:
    values = column.dropna()
    if values.empty:
        return None
    value = values.iloc[0]
    return value.item() if hasattr(value, "item") else value


def _sort_key(levels: dict[str, Any], factors: list[str]) -> tuple:
    key = []
    for name in factors:
        value = levels.get(name)
        key.append(
            (
                value is None,
                0 if isinstance(value, (int, float)) else 1,
                value if isinstance(value, (int, float)) else str(value),
            )
        )
    return tuple(key)


def analyse_family(
    results: Results, config_kind: str, correction: str, *, rng: np.random.Generator, n_resamples: int = 9999
) -> Family | None:
    """The family of ``results.hypothesis`` alone (cells of one comparison), decided on its own."""
    return analyse_families(
        results.for_comparison(results.hypothesis),
        config_kind,
        correction,
        rng=rng,
        n_resamples=n_resamples,
        comparisons=[results.hypothesis],
    )[0]


def analyse_families(
    results: Results,
    config_kind: str,
    correction: str,
    *,
    rng: np.random.Generator,
    n_resamples: int = 9999,
    comparisons: list[Hypothesis] | None = None,
) -> list[Family | None]:
    """Contrast treated − baseline in every cell of the confirm phase for one config kind, for every comparison,
    then decide: one multiplicity family of every (cell × comparison), split back into one ``Family`` per
    comparison (each gated and corrected at the size of the whole family)."""
    comparisons = comparisons or results.comparisons or [results.hypothesis]
    hyp = results.hypothesis
    confirm = results.trials[(results.trials["phase"] == "confirm") & (results.trials["config_kind"] == config_kind)]
    if confirm.empty:
        return [None] * len(comparisons)
    levels = cell_levels(results)
    cells = [cell for cell in levels if cell in set(confirm["cell_id"])]
    gate = gate_alpha(hyp.alpha, correction, len(cells) * len(comparisons))
    contrasts = []
    for comparison in comparisons:
        for cell in cells:
            rows = confirm[(confirm["cell_id"] == cell) & confirm["value"].notna()]
            arm_a = _per_seed(rows[rows["arm"] == comparison.treated])
            arm_b = _per_seed(rows[rows["arm"] == comparison.baseline])
            contrasts.append(
                compare_arms(
                    arm_a.to_numpy(),
                    arm_b.to_numpy(),
                    treated_seeds=arm_a.index.to_numpy(),
                    baseline_seeds=arm_b.index.to_numpy(),
                    alternative=comparison.alternative,
                    margin=hyp.margin,
                    gate_alpha=gate,
                    rng=rng,
                    n_resamples=n_resamples,
                )
            )
    decisions = decide_family(contrasts, alpha=hyp.alpha, correction=correction)
    families: list[Family | None] = []
    for k in range(len(comparisons)):
        part = slice(k * len(cells), (k + 1) * len(cells))
        part_contrasts, part_decisions = contrasts[part], decisions[part]
        sequential = ""
        spec = results.spec
        if (
            spec is not None
            and spec.confirm.adaptive is not None
            and config_kind == primary_config_kind(spec)
            and len(comparisons) == 1
        ):
            part_decisions, sequential = _sequential_decisions(
                results, cells, [levels[c] for c in cells], part_decisions
            )
        cell_results = [
            CellResult(cell, levels[cell], c, d)
            for cell, c, d in zip(cells, part_contrasts, part_decisions, strict=False)
        ]
        families.append(Family(config_kind, correction, gate, cell_results, sequential))
    return families


def _sequential_decisions(
    results: Results, cells: list[str], cell_levels: list[dict[str, Any]], plain: list[Decision]
) -> tuple[list[Decision], str]:
    """The decisions of an adaptive sweep's primary family as its group-sequential test made them, look by look."""
    spec = results.spec
    assert spec is not None and spec.confirm.adaptive is not None
    rows = results.trials.astype(object).where(results.trials.notna(), None).to_dict("records")
    design = sequential_design(spec)
    confirm = [r for r in rows if r["phase"] == "confirm"]
    _, diffs = confirm_differences(spec, confirm)
    reached = np.flatnonzero(np.isfinite(diffs).any(axis=0))  # replicates with a recorded pair
    last = int(reached.max()) if reached.size else 0
    looks_done = next(k for k, n in enumerate(design.looks, start=1) if n > last)
    names, outcome = confirm_outcome(spec, confirm, looks_done=looks_done)
    pvalues = look_pvalues(diffs, design)
    index = {name: i for i, name in enumerate(names)}
    spending = {"obrien_fleming": "O'Brien–Fleming-type", "pocock": "Pocock-type"}[design.spending]
    complete = not bool(outcome.open.any())
    method = (
        f"group-sequential: {len(design.looks)} looks at {', '.join(map(str, design.looks))} paired seeds, "
        f"Lan–DeMets {spending} alpha spending, {design.correction} across cells with recycling, futility "
        f"below {design.futility:g} conditional power"
        + ("" if complete else f"; the sweep is not finished (look {looks_done} of {len(design.looks)} running)")
    )
    out = []
    for cell, levels, decision in zip(cells, cell_levels, plain, strict=True):
        i = index.get(design_cell_id(levels), index.get(cell))
        if i is None:
            out.append(decision)
            continue
        k = int(outcome.stop_look[i]) - 1
        label = str(outcome.label[i])
        if bool(outcome.open[i]):
            why = f"open after look {k + 1} ({design.looks[k]} seeds): more seeds to come"
        elif bool(outcome.futile[i]):
            why = f"stopped for futility at look {k + 1} ({design.looks[k]} seeds)"
        elif label == "inconclusive":
            why = f"no decision after the last look ({design.looks[k]} seeds)"
        else:
            why = f"decided at look {k + 1} ({design.looks[k]} seeds)"
        out.append(
            Decision(
                label=label,  # type: ignore[arg-type]
                significant=label == "supported",
                equivalent=label == "equivalent",
                p_adjusted=float(pvalues.efficacy[i, k]),
                tost_adjusted=float(pvalues.tost[i, k]),
                opposite_adjusted=float(pvalues.opposite[i, k]),
                reason=f"group-sequential: {why}",
            )
        )
    return out, method


def _per_seed(rows: pd.DataFrame) -> pd.Series:
    """One value per seed (the mean if a seed was somehow run twice)."""
    return rows.groupby("seed")["value"].mean().astype(float)


def design_frame(results: Results, config_kind: str = PRIMARY_KIND) -> pd.DataFrame:
    hyp = results.hypothesis
    trials = results.trials
    rows = trials[
        (trials["phase"] == "confirm")
        & (trials["config_kind"] == config_kind)
        & trials["arm"].isin([hyp.treated, hyp.baseline])
        & trials["value"].notna()
    ]
    frame = pd.DataFrame(
        {
            "value": rows["value"].astype(float),
            "treated": (rows["arm"] == hyp.treated).astype(int),
            "log2_fraction": np.log2(rows["train_fraction"].astype(float)),
            "epochs": rows["epochs"].astype(float),
            "seed": rows["seed"].astype("int64").astype(str),
        }
    )
    for name in extra_factors(results):
        frame[name] = rows[name].astype(str)
    return frame.reset_index(drop=True)


def extra_factors(results: Results) -> tuple[str, ...]:
    return tuple(name for name in results.cell_factors if name not in ("train_fraction", "epochs"))


def analyse_tuning(results: Results, *, rng: np.random.Generator, n_resamples: int = 2000) -> list[TuningCell]:
    trials = results.trials
    tune = trials[trials["phase"] == "tune"].copy()
    if tune.empty:
        return []
    objective = pd.to_numeric(tune["objective"], errors="coerce").astype(float)
    diverged = (tune["status"] == "diverged") & objective.isna()
    if is_accuracy_like(results.objective_metric):
        objective[diverged] = tune.loc[diverged, "chance"].astype(float)
    objective[tune["status"] == "failed"] = np.nan
    tune["objective_value"] = objective
    levels = cell_levels(results)
    mode = "min" if results.objective_mode == "min" else "max"
    out = []
    for cell in levels:
        for arm in results.arms:
            rows = tune[(tune["cell_id"] == cell) & (tune["arm"] == arm)].sort_values("tune_index")
            values = rows["objective_value"].dropna().to_numpy(dtype=float)
            if values.size == 0:
                continue
            recipe = rows.loc[rows["tune_index"] == 0, "objective_value"]
            recipe_value = float(recipe.iloc[0]) if not recipe.empty and pd.notna(recipe.iloc[0]) else math.nan
            curve = tuning_curve(values, rng=rng, mode=mode, n_resamples=n_resamples)
            out.append(TuningCell(cell, levels[cell], arm, values, recipe_value, curve))
    return out


def attrition_table(results: Results) -> pd.DataFrame:
    """Runs per phase, cell and arm by status; always reported, even when everything succeeded."""
    trials = results.trials
    counts = trials.assign(n=1).pivot_table(
        index=["phase", "cell_id", "arm"], columns="status", values="n", aggfunc="sum", fill_value=0
    )
    for status in ("ok", "diverged", "failed"):
        if status not in counts.columns:
            counts[status] = 0
    counts = counts[["ok", "diverged", "failed"]].astype(int)
    counts["total"] = counts.sum(axis=1)
    nan_metric = trials[(trials["phase"] == "confirm") & (trials["status"] == "ok") & trials["value"].isna()]
    missing = nan_metric.groupby(["phase", "cell_id", "arm"]).size()
    counts["missing metric"] = missing.reindex(counts.index, fill_value=0).astype(int)
    order = {cell: i for i, cell in enumerate(cell_levels(results))}
    table = counts.reset_index()
    table["_phase"] = table["phase"].map({"tune": 0, "confirm": 1}).fillna(2)
    table["_cell"] = table["cell_id"].map(order).fillna(len(order))
    return table.sort_values(["_phase", "_cell", "arm"]).drop(columns=["_phase", "_cell"]).reset_index(drop=True)


def analyse(results: Results, *, rng: np.random.Generator, n_resamples: int = 9999) -> Analysis:
    hyp = results.hypothesis
    notes: list[str] = []
    comparisons = results.comparisons or [hyp]
    primaries = analyse_families(results, PRIMARY_KIND, hyp.correction, rng=rng, n_resamples=n_resamples)
    if primaries[0] is None:
        notes.append("no confirm-phase runs of the tuned ('best') configs yet: the primary tests are not computed")
    secondaries = analyse_families(results, SECONDARY_KIND, "bh", rng=rng, n_resamples=n_resamples)
    per_comparison = []
    for comparison, primary, secondary in zip(comparisons, primaries, secondaries, strict=True):
        view = results.for_comparison(comparison)
        model = None
        if primary is not None:
            frame = design_frame(view)
            if frame.empty:
                notes.append(
                    "no usable confirm runs for the design model"
                    + (f" of {comparison.name}" if len(comparisons) > 1 else "")
                )
            else:
                model = fit_design_model(
                    frame, logit=view.accuracy_like, points_per_unit=view.scale, extra_factors=extra_factors(view)
                )
        trends: list[TrendTest] = []
        if model is not None and model.fitted:
            sign = -1.0 if comparison.direction == "less" else 1.0
            if comparison.direction == "two-sided" and "treated" in set(model.coefficients["term"]):
                main = float(model.coefficients.set_index("term").loc["treated", "estimate"])
                sign = -1.0 if main < 0 else 1.0
            trends = trend_tests(model, advantage_sign=sign, alpha=hyp.alpha, correction=hyp.correction)
        per_comparison.append(ComparisonAnalysis(comparison, primary, secondary, model, trends))
    tuning = analyse_tuning(results, rng=rng, n_resamples=min(n_resamples, 2000))
    first = per_comparison[0]
    return Analysis(
        first.primary,
        first.secondary,
        first.model,
        tuning,
        attrition_table(results),
        notes,
        first.trends,
        per_comparison,
    )
