"""Tables of the report: numeric DataFrames (for W&B and tests) and their display forms (for markdown/HTML)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tlsweep.design import MIN_OPTIMIZER_STEPS
from tlsweep.report.analysis import Family, TuningCell, cell_levels
from tlsweep.report.classes import ClassView
from tlsweep.report.formatting import describe_cell, fmt_interval, fmt_num, fmt_p
from tlsweep.report.health import CellHealth, EdgeOptimum
from tlsweep.report.load import Results, is_accuracy_like
from tlsweep.report.verdicts import cell_verdict
from tlsweep.stats import TrendModel, mean_interval, smallest_threshold


def family_table(family: Family, results: Results) -> pd.DataFrame:
    """One row per cell, numbers in the metric's own units (accuracies as fractions) and verdicts."""
    rows = []
    for cell in family.cells:
        c, d = cell.contrast, cell.decision
        rows.append(
            {
                "cell_id": cell.cell_id,
                **cell.levels,
                "design": c.design,
                "n_pairs": c.n_pairs,
                "n_treated": c.n_treated,
                "n_baseline": c.n_baseline,
                "mean_treated": c.mean_treated,
                "mean_baseline": c.mean_baseline,
                "difference": c.difference.estimate,
                "difference_low": c.difference.low,
                "difference_high": c.difference.high,
                "difference_ci_method": c.difference.method,
                "difference_simultaneous_low": c.simultaneous.low,
                "difference_simultaneous_high": c.simultaneous.high,
                "simultaneous_confidence": family.simultaneous,
                "dropped_runs": c.dropped,
                "ratio": c.ratio.estimate,
                "ratio_low": c.ratio.low,
                "ratio_high": c.ratio.high,
                "d_z": c.d_z,
                "hedges_g": c.hedges_g,
                "p_improvement": c.p_improvement.estimate,
                "p_improvement_low": c.p_improvement.low,
                "p_improvement_high": c.p_improvement.high,
                "test": c.test.name,
                "p_value": float(c.test.pvalue),
                "robust_test": c.robustness.name,
                "robust_p_value": float(c.robustness.pvalue),
                "robust_opposite_p_value": {"greater": c.robust_less, "less": c.robust_greater}.get(
                    c.alternative, float("nan")
                ),
                "p_adjusted": d.p_adjusted,
                "opposite_p_adjusted": d.opposite_adjusted,
                "robust_p_adjusted": d.robust_adjusted,
                "robust_note": d.robust_note,
                "tost_p_value": float(c.tost.pvalue),
                "tost_p_adjusted": d.tost_adjusted,
                "exact_floor": c.exact_floor,
                "robust_reachable": c.robust_reachable,
                "diverged": "; ".join(f"{arm}: {n}" for arm, n in cell.diverged.items()),
                "verdict_without_diverged": cell.without_diverged,
                "needed_replicates": c.needed_replicates,
                "seeds_for_power": c.seeds_for_power,
                "verdict": d.label,
                "reason": d.reason,
                "sentence": cell_verdict(cell, results, family).sentence,
                "notes": "; ".join(c.notes),
            }
        )
    return pd.DataFrame(rows)


def family_display(
    table: pd.DataFrame, results: Results, health: dict[str, CellHealth] | None = None, family: Family | None = None
) -> pd.DataFrame:
    """The per-cell table as the reader sees it (points, t intervals in brackets, corrected p, optimizer steps)."""
    hyp, s = results.hypothesis, results.scale
    health = health or {}
    sequential = family is not None and bool(family.sequential)
    simultaneous = f"{100 * family.simultaneous:.3g}%" if family is not None else "simultaneous"
    out = []
    for row in table.to_dict("records"):
        cell_health = health.get(str(row["cell_id"]))
        verdict = row["verdict"] if row["verdict"] != "equivalent" else "equivalent (caught up)"
        if cell_health is not None and cell_health.at_chance:
            verdict = "uninformative (at chance)"
        levels = {name: row[name] for name in results.cell_factors if name in row}
        computable = not str(row["design"]).startswith("not computed")
        reversed_ = row["verdict"] == "not supported"
        n = row["n_pairs"] if row["design"] == "paired" else f"{row['n_treated']}+{row['n_baseline']}"
        dropped = int(row.get("dropped_runs") or 0)
        out.append(
            {
                "verdict": verdict,
                "cell": describe_cell(levels),
                "n": f"{n} (−{dropped})" if dropped else n,
                f"{hyp.treated}": fmt_num(row["mean_treated"] * s),
                f"{hyp.baseline}": fmt_num(row["mean_baseline"] * s),
                f"Δ [95% CI] ({results.unit})": fmt_interval(
                    row["difference"], row["difference_low"], row["difference_high"], scale=s, signed=True
                ),
                f"Δ [{simultaneous} simultaneous]": fmt_interval(
                    row["difference"],
                    row["difference_simultaneous_low"],
                    row["difference_simultaneous_high"],
                    scale=s,
                    signed=True,
                ),
                "ratio [95% CI]": fmt_interval(row["ratio"], row["ratio_low"], row["ratio_high"], digits=2),
                "d_z": fmt_num(row["d_z"], 2),
                "P(improve)": fmt_num(row["p_improvement"], 2),
                "p (t)": fmt_p(row["p_value"]),
                ("p at deciding look (nominal)" if sequential else "p adjusted"): (
                    f"{fmt_p(row['opposite_p_adjusted'])} (other direction)" if reversed_ else fmt_p(row["p_adjusted"])
                ),
                "p (exact, robustness)": (
                    "–"
                    if not computable
                    else f"{fmt_p(row['robust_opposite_p_value'])} (other direction)"
                    if reversed_
                    else fmt_p(row["robust_p_value"])
                ),
                "TOST p adjusted": fmt_p(row["tost_p_adjusted"]),
                "steps": "–" if cell_health is None or cell_health.steps is None else str(cell_health.steps),
            }
        )
    return pd.DataFrame(out)


def arms_table(results: Results) -> pd.DataFrame:
    """Every compared arm side by side per cell (confirm runs of the tuned configs): mean [95% t CI] in reported
    units, and the arm with the highest mean."""
    trials = results.trials
    confirm = trials[(trials["phase"] == "confirm") & (trials["config_kind"] == "best") & trials["value"].notna()]
    s = results.scale
    rows = []
    for cell, levels in cell_levels(results).items():
        in_cell = confirm[confirm["cell_id"] == cell]
        if in_cell.empty:
            continue
        row: dict[str, object] = {"cell": describe_cell(levels)}
        means = {}
        for arm in results.arms:
            values = in_cell.loc[in_cell["arm"] == arm, "value"].to_numpy(float)
            if values.size == 0:
                row[arm] = "–"
                continue
            interval = mean_interval(values)
            means[arm] = interval.estimate
            row[arm] = fmt_interval(interval.estimate, interval.low, interval.high, scale=s)
        row["highest mean"] = max(means, key=lambda a: means[a]) if means else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def design_health_lines(results: Results, health: dict[str, CellHealth], edges: list[EdgeOptimum]) -> list[str]:
    """Steps per cell, uninformative cells and tuned optima at the edge of their range, as bullet lines."""
    lines = []
    steps = {cell: h.steps for cell, h in health.items() if h.steps is not None}
    if steps:
        listed = "; ".join(f"{describe_cell(health[c].levels)}: {n}" for c, n in steps.items())
        lines.append(f"- Optimizer steps per run (confirm phase): {listed}.")
        few = [c for c, n in steps.items() if n < MIN_OPTIMIZER_STEPS]
        if few:
            lines.append(
                f"- Fewer than {MIN_OPTIMIZER_STEPS} optimizer steps at "
                f"{'; '.join(describe_cell(health[c].levels) for c in few)}: an arm trained from scratch "
                "barely moves from its initialisation there; more epochs, a smaller batch or a larger train "
                "fraction give it a fair chance (`tlsweep validate` prints this before a sweep)."
            )
    dead = [h for h in health.values() if h.at_chance]
    if dead:
        margin = f"{results.hypothesis.margin * results.scale:g} {results.unit}"
        lines.append(
            f"- Uninformative (no arm above chance by more than {margin}, or than 1.96 standard errors): "
            f"{'; '.join(describe_cell(h.levels) for h in dead)}. These cells can neither support nor refute "
            "the hypothesis and are left out of the region verdict and the crossover."
        )
    for edge in edges:
        lines.append(f"- Tuned optimum at the edge of its range: {edge.sentence()}.")
    if not edges and results.spec is not None and results.spec.design.tune:
        lines.append("- No selected value of a numeric tuned parameter lies at the edge of its search range.")
    return lines or ["- Nothing to report (no confirm-phase runs)."]


def power_notes(table: pd.DataFrame, results: Results) -> list[str]:
    notes = []
    for row in table.to_dict("records"):
        if str(row["design"]).startswith("not computed"):
            continue
        levels = {name: row[name] for name in results.cell_factors if name in row}
        have = row["n_pairs"] if row["design"] == "paired" else min(row["n_treated"], row["n_baseline"])
        unit = "paired seeds" if row["design"] == "paired" else "seeds per arm"
        effect = row["d_z"] if row["design"] == "paired" else row["hedges_g"]
        effect_name = "d_z" if row["design"] == "paired" else "Hedges' g"
        needed_power = row["seeds_for_power"]
        if needed_power is None or (isinstance(needed_power, float) and math.isnan(needed_power)):
            notes.append(
                f"{describe_cell(levels)}: observed {effect_name} {fmt_num(effect, 2)} is zero or points away "
                f"from the hypothesis, so no number of seeds gives it power; an equivalence claim needs "
                f"a TOST (have {have} {unit})."
            )
            continue
        needed = int(needed_power)
        status = "enough" if have >= needed else f"need {needed - have} more"
        robust = (
            ""
            if have >= int(row["needed_replicates"])
            else f"; the exact robustness test needs {int(row['needed_replicates'])} to reach that threshold at all"
        )
        notes.append(
            f"{describe_cell(levels)}: observed {effect_name} {fmt_num(effect, 2)} needs {needed} {unit} for "
            f"80% power of the t-test at one-sided p ≤ {_threshold(results, table):.3g} (have {have}: "
            f"{status}{robust})."
        )
    return notes


def _threshold(results: Results, table: pd.DataFrame) -> float:
    """The family's smallest one-sided threshold (every cell × comparison, both directions)."""
    hyp = results.hypothesis
    return smallest_threshold(hyp.alpha, hyp.correction, len(table) * max(len(results.comparisons), 1))


def model_table(model: TrendModel, results: Results) -> pd.DataFrame:
    """The trend model's coefficients as the reader sees them (the metric's reported units, t intervals)."""
    if not model.fitted or model.coefficients.empty:
        return pd.DataFrame()
    table = model.coefficients
    return pd.DataFrame(
        {
            "term": table["term"],
            f"{results.unit} [95% CI]": [
                fmt_interval(e, lo, hi, scale=results.scale, digits=2, signed=True)
                for e, lo, hi in zip(table["estimate"], table["ci_low"], table["ci_high"], strict=True)
            ],
            "p (two-sided)": [fmt_p(p) for p in table["p"]],
        }
    )


def tuning_table(cells: list[TuningCell], results: Results) -> pd.DataFrame:
    """Per cell and arm: recipe (k = 1) validation score, expected best at k = 1 and at k = K."""
    s = 100.0 if is_accuracy_like(results.objective_metric) else 1.0
    rows = []
    for cell in cells:
        curve = cell.curve
        k_max = len(cell.values)
        rows.append(
            {
                "cell_id": cell.cell_id,
                **cell.levels,
                "arm": cell.arm,
                "trials": k_max,
                "recipe (k=1)": cell.recipe_value * s,
                "expected best k=1": curve.expected[0] * s if curve is not None else np.nan,
                "expected best k=K": curve.expected[-1] * s if curve is not None else np.nan,
                "band low k=K": curve.low[-1] * s if curve is not None else np.nan,
                "band high k=K": curve.high[-1] * s if curve is not None else np.nan,
            }
        )
    return pd.DataFrame(rows)


def tuning_verdicts(table: pd.DataFrame, results: Results) -> list[str]:
    """At k = 1 (the recipe) and at k = K: which arm leads on validation, by how much."""
    hyp = results.hypothesis
    sentences: list[str] = []
    if table.empty:
        return sentences
    higher_better = results.objective_mode != "min"
    unit = " points" if is_accuracy_like(results.objective_metric) else ""
    for _cell_id, rows in table.groupby("cell_id", sort=False):
        by_arm = rows.set_index("arm")
        if hyp.treated not in by_arm.index or hyp.baseline not in by_arm.index:
            continue
        levels = {name: by_arm.iloc[0][name] for name in results.cell_factors if name in by_arm.columns}
        parts = []
        for label, column in (
            ("k = 1 (recipe)", "recipe (k=1)"),
            (f"k = K = {int(by_arm['trials'].max())}", "expected best k=K"),
        ):
            gap = by_arm.loc[hyp.treated, column] - by_arm.loc[hyp.baseline, column]
            if not np.isfinite(gap):
                parts.append(f"at {label} not computable")
                continue
            leader = hyp.treated if (gap > 0) == higher_better else hyp.baseline
            parts.append(f"at {label} {leader} leads by {abs(gap):.1f}{unit}")
        sentences.append(f"{describe_cell(levels)}: {'; '.join(parts)} (validation {results.objective_metric}).")
    return sentences


def attrition_display(table: pd.DataFrame, results: Results) -> pd.DataFrame:
    levels = cell_levels(results)
    shown = table.copy()
    shown["cell_id"] = [describe_cell(levels[c]) if c in levels else c for c in shown["cell_id"]]
    return shown.rename(columns={"cell_id": "cell"})


def class_display(view: ClassView, cell: str) -> pd.DataFrame:
    """One cell's per-class table: a row per class; each arm's mean test accuracy (points) over its seeds (n in the
    header), then per comparison the mean paired difference treated − baseline (pairs in the header)."""
    accuracy = view.accuracy[view.accuracy["cell_id"] == cell]
    differences = view.differences[view.differences["cell_id"] == cell]
    shown = pd.DataFrame({"class": view.class_names})
    for arm, rows in accuracy.groupby("arm", sort=False):
        rows = rows.sort_values("class_index")
        shown[f"{arm} (n={int(rows['seeds'].max())})"] = [fmt_num(v * 100, 1) for v in rows["mean"]]
    for (treated, baseline), rows in differences.groupby(["treated", "baseline"], sort=False):
        rows = rows.sort_values("class_index")
        header = f"Δ {treated} − {baseline} ({int(rows['pairs'].max())} pairs)"
        shown[header] = [fmt_num(v * 100, 1, signed=True) for v in rows["difference"]]
    return shown
