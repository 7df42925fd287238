"""Run the statistics of the report on loaded results: per-cell families, the trend model, tuning, attrition."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlsweep.design import cell_id as design_cell_id
from tlsweep.design import confirm_differences, confirm_outcome, primary_config_kind, sequential_design
from tlsweep.report.load import Hypothesis, Results, is_accuracy_like
from tlsweep.stats import (
    Contrast,
    Decision,
    TrendModel,
    TrendTest,
    TuningCurve,
    compare_arms,
    decide_family,
    fit_cell_trend,
    simultaneous_confidence,
    smallest_threshold,
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
    diverged: dict[str, int] = field(default_factory=dict)  # arm → diverged runs among the cell's analysed runs
    without_diverged: str | None = None  # the label when diverged runs are left out (None: no run diverged)


@dataclass(frozen=True)
class Family:
    config_kind: str  # "best" (primary, equal budget) | "recipe" (secondary, fixed recipe)
    correction: str
    threshold: float  # the smallest one-sided threshold of the family (alpha / 2m under Holm)
    cells: list[CellResult]
    sequential: str = ""  # adaptive confirm seeds: how the group-sequential test decided (else "")
    simultaneous: float = 0.95  # confidence of the simultaneous intervals (1 − alpha/m under Holm)
    size: int = 0  # cells × comparisons: m, the family holds 2m one-sided tests


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
    """The statistics of one comparison: its share of the families, its trend model and trend tests."""

    hypothesis: Hypothesis
    primary: Family | None
    secondary: Family | None
    model: TrendModel | None
    trends: list[TrendTest] = field(default_factory=list)


@dataclass
class Analysis:
    primary: Family | None  # the first comparison's (``comparisons[0]``)
    secondary: Family | None
    model: TrendModel | None
    tuning: list[TuningCell]  # every compared arm
    attrition: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    trends: list[TrendTest] = field(default_factory=list)  # does the advantage shrink or grow (one family)
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


def _contrasts(
    confirm: pd.DataFrame,
    cells: list[str],
    comparisons: list[Hypothesis],
    *,
    threshold: float,
    confidence: float,
    rng: np.random.Generator,
    n_resamples: int,
    drop_diverged: bool,
) -> list[Contrast]:
    usable = confirm[confirm["value"].notna()]
    if drop_diverged:
        usable = usable[usable["status"] != "diverged"]
    contrasts = []
    for comparison in comparisons:
        for cell in cells:
            rows = usable[usable["cell_id"] == cell]
            arm_a = _per_seed(rows[rows["arm"] == comparison.treated])
            arm_b = _per_seed(rows[rows["arm"] == comparison.baseline])
            contrasts.append(
                compare_arms(
                    arm_a.to_numpy(),
                    arm_b.to_numpy(),
                    treated_seeds=arm_a.index.to_numpy(),
                    baseline_seeds=arm_b.index.to_numpy(),
                    alternative=comparison.alternative,
                    margin=comparison.margin,
                    smallest_threshold=threshold,
                    simultaneous_confidence=confidence,
                    rng=rng,
                    n_resamples=n_resamples,
                )
            )
    return contrasts


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
    then decide: one multiplicity family of every (cell × comparison) in both directions, split back into one
    ``Family`` per comparison. Cells with diverged runs are decided a second time without them (a sensitivity
    check the verdicts report)."""
    comparisons = comparisons or results.comparisons or [results.hypothesis]
    hyp = results.hypothesis
    trials = results.trials
    confirm = trials[(trials["phase"] == "confirm") & (trials["config_kind"] == config_kind)]
    if confirm.empty:
        return [None] * len(comparisons)
    levels = cell_levels(results)
    cells = [cell for cell in levels if cell in set(confirm["cell_id"])]
    size = len(cells) * len(comparisons)
    threshold = smallest_threshold(hyp.alpha, correction, size)
    confidence = simultaneous_confidence(hyp.alpha, correction, size)
    settings = dict(threshold=threshold, confidence=confidence, rng=rng, n_resamples=n_resamples)
    contrasts = _contrasts(confirm, cells, comparisons, drop_diverged=False, **settings)  # type: ignore[arg-type]
    decisions = decide_family(contrasts, alpha=hyp.alpha, correction=correction)
    analysed = confirm[confirm["value"].notna()]
    diverged_rows = analysed[analysed["status"] == "diverged"]
    without: list[str | None] = [None] * len(contrasts)
    if not diverged_rows.empty:
        healthy = _contrasts(confirm, cells, comparisons, drop_diverged=True, **settings)  # type: ignore[arg-type]
        without = [d.label for d in decide_family(healthy, alpha=hyp.alpha, correction=correction)]
    families: list[Family | None] = []
    for k, comparison in enumerate(comparisons):
        part = slice(k * len(cells), (k + 1) * len(cells))
        part_contrasts, part_decisions, part_without = contrasts[part], decisions[part], without[part]
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
        cell_results = []
        for cell, contrast, decision, label in zip(cells, part_contrasts, part_decisions, part_without, strict=True):
            rows = diverged_rows[diverged_rows["cell_id"] == cell]
            counts = {
                arm: int((rows["arm"] == arm).sum())
                for arm in (comparison.treated, comparison.baseline)
                if (rows["arm"] == arm).any()
            }
            cell_results.append(CellResult(cell, levels[cell], contrast, decision, counts, label if counts else None))
        families.append(Family(config_kind, correction, threshold, cell_results, sequential, confidence, size))
    return families


def _recorded_pairs(spec: Any, confirm_rows: list[dict[str, Any]], cells: list[str]) -> np.ndarray:
    """``[m, max_seeds]``: both arms of the primary comparison have a recorded confirm run (any status)."""
    treated, baseline = spec.compared_arms[0].pair
    kind = primary_config_kind(spec)
    index = {cell: i for i, cell in enumerate(cells)}
    n = spec.confirm.max_seeds
    seen = {arm: np.zeros((len(cells), n), dtype=bool) for arm in (treated, baseline)}
    factors = spec.cell_factors()
    for row in confirm_rows:
        if row["config_kind"] != kind or row["arm"] not in seen or row.get("replicate") is None:
            continue
        name = design_cell_id({f: row[f] for f in factors}) if all(row.get(f) is not None for f in factors) else None
        i, r = index.get(name if name is not None else row["cell_id"]), int(row["replicate"])
        if i is not None and 0 <= r < n:
            seen[row["arm"]][i, r] = True
    return seen[treated] & seen[baseline]


def complete_looks(spec: Any, confirm_rows: list[dict[str, Any]]) -> int:
    """How many looks are complete: every cell still open at look k has both arms recorded for each of its first
    n_k seeds (a look with a hole is not evaluated: its boundary belongs to its full information)."""
    design = sequential_design(spec)
    cells, _ = confirm_differences(spec, confirm_rows)
    recorded = _recorded_pairs(spec, confirm_rows, cells)
    done = 0
    open_ = np.ones(len(cells), dtype=bool)
    for k, n in enumerate(design.looks, start=1):
        if not recorded[open_, :n].all():
            break
        done = k
        _, outcome = confirm_outcome(spec, confirm_rows, looks_done=k)
        open_ = outcome.open
        if not open_.any():
            break
    return done


def _sequential_decisions(
    results: Results, cells: list[str], cell_levels: list[dict[str, Any]], plain: list[Decision]
) -> tuple[list[Decision], str]:
    """The decisions of an adaptive sweep's primary family as its group-sequential test made them, look by look,
    over the complete looks only."""
    spec = results.spec
    assert spec is not None and spec.confirm.adaptive is not None
    rows = results.trials.astype(object).where(results.trials.notna(), None).to_dict("records")
    design = sequential_design(spec)
    confirm = [r for r in rows if r["phase"] == "confirm"]
    _, diffs = confirm_differences(spec, confirm)
    looks_done = complete_looks(spec, confirm)
    spending = {"obrien_fleming": "O'Brien–Fleming-type", "pocock": "Pocock-type"}[design.spending]
    method = (
        f"group-sequential: {len(design.looks)} looks at {', '.join(map(str, design.looks))} paired seeds, "
        f"Lan–DeMets {spending} alpha spending, {design.correction} across cells and both directions with "
        f"recycling, futility below {design.futility:g} conditional power; the p column holds each cell's nominal "
        "p at its deciding look (compared with that look's boundary), and Δ with its interval is not adjusted for "
        "early stopping (a cell stopped early tends to overstate its effect)"
    )
    if looks_done == 0:
        method += "; the sweep is not finished (look 1 is not complete): no cell is decided yet"
        undecided = Decision(
            "inconclusive", False, False, math.nan, math.nan, math.nan, "group-sequential: look 1 is not complete yet"
        )
        return [undecided for _ in plain], method
    names, outcome = confirm_outcome(spec, confirm, looks_done=looks_done)
    pvalues = look_pvalues(diffs, design)
    index = {name: i for i, name in enumerate(names)}
    if bool(outcome.open.any()):
        method += f"; the sweep is not finished (look {looks_done} of {len(design.looks)} complete)"
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


def cell_frame(family: Family, results: Results) -> pd.DataFrame:
    """One row per cell of a comparison's family: the advantage Δ (mean paired difference) and the cell's levels."""
    rows = []
    for cell in family.cells:
        levels = cell.levels
        rows.append(
            {
                "delta": cell.contrast.difference.estimate,
                "log2_fraction": math.log2(float(levels.get("train_fraction") or 1.0)),
                "epochs": float(levels.get("epochs") or 0.0),
                **{name: str(levels.get(name)) for name in extra_factors(results)},
            }
        )
    return pd.DataFrame(rows)


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


def _advantage_sign(comparison: Hypothesis, model: TrendModel) -> float:
    """+1 when the treated arm is expected above the baseline, −1 below; two-sided: the sign of the mean advantage."""
    if comparison.direction == "less":
        return -1.0
    if comparison.direction == "two-sided" and model.fitted:
        centre = model.coefficients.set_index("term").loc["treated", "estimate"]
        return -1.0 if float(centre) < 0 else 1.0
    return 1.0


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
        trends: list[TrendTest] = []
        if primary is not None:
            model = fit_cell_trend(cell_frame(primary, view), extra_factors=extra_factors(view))
            if model.fitted:
                trends = trend_tests(
                    model,
                    advantage_sign=_advantage_sign(comparison, model),
                    alpha=hyp.alpha,
                    correction=hyp.correction,
                )
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
