"""``build_report``: load → analyse → tables, verdicts, figures → report.md / report.html."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tlsweep.errors import StoreError, TlsweepError
from tlsweep.report.analysis import Analysis, Family, analyse
from tlsweep.report.formatting import CORRECTION_NAMES, describe_cell
from tlsweep.report.health import CellHealth, EdgeOptimum, cell_health, edge_optima
from tlsweep.report.load import Results, is_accuracy_like, load_results
from tlsweep.report.render import (
    METHODS,
    figures_markdown,
    hypothesis_lines,
    markdown_table,
    markdown_to_html,
    model_sentences,
)
from tlsweep.report.tables import (
    attrition_display,
    design_health_lines,
    family_display,
    family_table,
    model_table,
    power_notes,
    tuning_table,
    tuning_verdicts,
)
from tlsweep.report.verdicts import Verdict, cell_verdict, crossover, overall_verdict, trend_clause
from tlsweep.spec import SweepSpec
from tlsweep.stats import adjust_pvalues

FORMATS = ("md", "html")


@dataclass
class ReportResult:
    """Paths written and the report's content as data (tables in the metric's own units)."""

    out_dir: Path
    markdown_path: Path | None
    html_path: Path | None
    figures: dict[str, Path]
    cell_table: pd.DataFrame  # primary family (equal budget), one row per cell
    recipe_table: pd.DataFrame  # secondary family (fixed recipe), may be empty
    attrition: pd.DataFrame
    tuning: pd.DataFrame
    model: pd.DataFrame  # design-model coefficients (estimate, CI, p, points), may be empty
    overall: Verdict
    cell_verdicts: dict[str, Verdict]  # cell_id → verdict
    crossover: str
    notes: list[str] = field(default_factory=list)
    spec: SweepSpec | None = None  # the spec the results were written with (None when spec.resolved.yaml is missing)
    trends: pd.DataFrame = field(default_factory=pd.DataFrame)  # one-sided trend tests (term, points, p, shrinks)
    health: dict[str, CellHealth] = field(default_factory=dict)  # cell_id → steps, arms at chance
    edge_optima: list[EdgeOptimum] = field(default_factory=list)  # selected values at an end of their range

    @property
    def verdict_text(self) -> str:
        return f"{self.overall.label}: {self.overall.sentence} {self.crossover}"


def build_report(results_dir: Path, *, out_dir: Path | None = None, seed: int = 0,
                 formats: Sequence[str] = FORMATS, n_resamples: int = 9999) -> ReportResult:
    """Write the statistical report of a results directory from its Parquet files alone.

    Args:
        results_dir: a local results directory (``runs/<name>``); for results on S3/GCS use ``tlsweep report``.
        out_dir: where to write (default ``<results_dir>/report``).
        seed: drives every bootstrap and permutation resample, so the same results give the same report.
        formats: any of ``"md"``, ``"html"``, ``"png"``.
        n_resamples: bootstrap and permutation resamples per test.

    Returns:
        ``ReportResult``: the paths written (``markdown_path``, ``html_path``, ``figures``) and the content as data:
        the per-cell tables, the design model, tuning curves, attrition, the verdict per cell and overall, the
        crossover sentence, notes and the spec.

    Raises:
        StoreError: when the directory holds no results (run ``tlsweep run SPEC`` first).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise TlsweepError(f"unknown report format(s) {unknown}; choose from {list(FORMATS)}")
    results = load_results(Path(results_dir))
    out = Path(out_dir) if out_dir is not None else results.root / "report"
    _make_out_dir(out, default=out_dir is None)
    rng = np.random.default_rng(seed)
    analysis = analyse(results, rng=rng, n_resamples=n_resamples)
    from tlsweep.report.figures import write_figures

    figures = write_figures(results, analysis, out / "figures", rng=rng)
    cell_table = family_table(analysis.primary, results) if analysis.primary else pd.DataFrame()
    recipe_table = family_table(analysis.secondary, results) if analysis.secondary else pd.DataFrame()
    tuning = tuning_table(analysis.tuning, results)
    model = analysis.model.coefficients if analysis.model is not None else pd.DataFrame()
    health = cell_health(results)
    edges = edge_optima(results)
    overall = overall_verdict(analysis.primary, results, health=health, trends=analysis.trends)
    cross = crossover(analysis.primary, results, health)
    verdicts = {c.cell_id: cell_verdict(c, results, analysis.primary, health.get(c.cell_id))
                for c in analysis.primary.cells} if analysis.primary else {}
    if not cell_table.empty:
        cell_table["informative"] = [health[c].informative if c in health else True for c in cell_table["cell_id"]]
        cell_table["optimizer_steps"] = [health[c].steps if c in health else None for c in cell_table["cell_id"]]
        cell_table["sentence"] = [verdicts[c].sentence if c in verdicts else s
                                  for c, s in zip(cell_table["cell_id"], cell_table["sentence"], strict=True)]
    notes = _could_not_compute(results, analysis)
    markdown = _markdown(results, analysis, out, figures, cell_table, recipe_table, tuning, overall, cross,
                         verdicts, notes, health, edges)
    md_path = html_path = None
    if "md" in formats:
        md_path = out / "report.md"
        md_path.write_text(markdown, encoding="utf-8")
    if "html" in formats:
        html_path = out / "report.html"
        html_path.write_text(markdown_to_html(markdown, title=f"tlsweep report: {results.name}", base_dir=out),
                             encoding="utf-8")
    trends = pd.DataFrame([vars(t) for t in analysis.trends])
    return ReportResult(out, md_path, html_path, figures, cell_table, recipe_table, analysis.attrition, tuning,
                        model, overall, verdicts, cross, notes, results.spec, trends, health, edges)


def _could_not_compute(results: Results, analysis: Analysis) -> list[str]:
    notes = list(results.notes) + list(analysis.notes)
    for family in (analysis.primary, analysis.secondary):
        if family is None:
            continue
        for cell in family.cells:
            for note in cell.contrast.notes:
                notes.append(f"({family.config_kind}) {describe_cell(cell.levels)}: {note}")
    if analysis.model is not None:
        notes += [f"design model: {note}" for note in analysis.model.notes]
        if not analysis.model.fitted:
            notes.append(f"design model {analysis.model.method}")
    if not analysis.tuning:
        notes.append("no tuning-phase trials with an objective value: no tuning curves")
    return list(dict.fromkeys(notes))


def _family_section(title: str, family: Family, table: pd.DataFrame, results: Results,
                    health: dict[str, CellHealth]) -> list[str]:
    lines = [f"## {title}", ""]
    if family.sequential:
        lines.append(f"Adaptive confirm seeds: each cell's verdict is the decision of the {family.sequential} "
                     "(README: \"Adaptive confirm seeds\"); the p-values shown are those of the look that decided. "
                     f"Means and differences in {results.unit}.")
    else:
        lines.append(f"{CORRECTION_NAMES[family.correction]}-corrected over {len(family.cells)} cell(s); "
                     f"a lone effect must reach p ≤ {family.gate:.3g}. Means and differences in {results.unit}.")
    lines += ["", markdown_table(family_display(table, results, health)), ""]
    verdicts = [cell_verdict(c, results, family, health.get(c.cell_id)) for c in family.cells]
    lines += [f"- **{v.label}** — {v.sentence}" for v in verdicts]
    unpaired = [f"{describe_cell(c.levels)} ({c.contrast.design})" for c in family.cells
                if c.contrast.computable and not c.contrast.paired]
    if unpaired:
        lines += ["", "Unpaired fallback: " + "; ".join(unpaired) + "."]
    robust = adjust_pvalues([float(c.contrast.robustness.pvalue) for c in family.cells], family.correction)
    disagreements = [describe_cell(c.levels) for c, p in zip(family.cells, robust, strict=False)
                     if c.decision.significant and not p <= results.hypothesis.alpha]
    if disagreements:
        lines += ["", "Robustness: the exact test (sign-flip, or Mann–Whitney when unpaired) is not significant "
                      "after the same correction at " + "; ".join(disagreements) + "; read those cells with care."]
    return [*lines, ""]


def _markdown(results: Results, analysis: Analysis, out: Path, figures: dict[str, Path], cell_table: pd.DataFrame,
              recipe_table: pd.DataFrame, tuning: pd.DataFrame, overall: Verdict, cross: str,
              verdicts: dict[str, Verdict], notes: list[str], health: dict[str, CellHealth],
              edges: list[EdgeOptimum]) -> str:
    hyp = results.hypothesis
    trials, epochs = results.trials, results.epochs
    family_size = len(analysis.primary.cells) if analysis.primary else 0
    lines = [
        f"# tlsweep report: {results.name}", "",
        f"Results directory `{results.root}`: {len(trials)} trial(s) ({int((trials['phase'] == 'tune').sum())} "
        f"tuning, {int((trials['phase'] == 'confirm').sum())} confirm), {len(epochs)} epoch row(s).", "",
        "## Verdict", "",
        f"**Overall: {overall.label}.** {overall.sentence}", "",
        cross, "",
    ]
    if verdicts and analysis.primary is not None:
        lines += [f"- {describe_cell(next(c.levels for c in analysis.primary.cells if c.cell_id == cell_id))}: "
                  f"**{verdict.label}**" for cell_id, verdict in verdicts.items()] + [""]
    lines += ["## Hypothesis and design", "", *hypothesis_lines(results, family_size), ""]
    if analysis.primary is not None:
        lines += _family_section("(B) Equal tuning budget — primary family", analysis.primary, cell_table, results,
                                 health)
    if analysis.secondary is not None:
        lines += _family_section("(A) Fixed recipe — secondary family (recipe tuned for fine-tuning; biased toward "
                                 "pretrained)", analysis.secondary, recipe_table, results,
                                 cell_health(results, "recipe"))
    lines += ["## The whole design", ""]
    if analysis.model is None:
        lines += ["Not fitted: no confirm-phase results.", ""]
    else:
        model = analysis.model
        if model.fitted:
            lines += [f"Model: `{model.formula}` — {model.method}, {model.n_obs} runs.", ""]
        lines += [" ".join(model_sentences(model, results)), ""]
        table = model_table(model, results)
        if not table.empty:
            lines += [markdown_table(table), ""]
        if analysis.trends:
            lines += [f"Trend (the second half of the hypothesis: one-sided tests that the advantage shrinks, "
                      f"{CORRECTION_NAMES[hyp.correction] if len(analysis.trends) > 1 else 'uncorrected'} over "
                      f"{len(analysis.trends)} term(s)): {trend_clause(analysis.trends, results)}.", ""]
    lines += ["## Design health", "", *design_health_lines(results, health, edges), ""]
    if not cell_table.empty:
        lines += ["## Seeds and power", "", *[f"- {n}" for n in power_notes(cell_table, results)], ""]
    lines += ["## Tuning fairness", ""]
    if tuning.empty:
        lines += ["No tuning-phase trials with an objective value.", ""]
    else:
        lines += [f"- {s}" for s in tuning_verdicts(tuning, results)]
        display = tuning.drop(columns=["cell_id"]).round(2)
        lines += ["", f"Validation `{results.objective_metric}` "
                      f"({'points' if is_accuracy_like(results.objective_metric) else 'units'}); expected best after "
                      "k trials by the U-estimator, band = 95% bootstrap.", "", markdown_table(display), ""]
        if "recipe" in set(results.trials["config_kind"]) and analysis.secondary is not None:
            lines += ["The test-set verdict at k = 1 is comparison (A) above (fixed recipe, confirm runs); at k = K "
                      "it is comparison (B).", ""]
    attrition = markdown_table(attrition_display(analysis.attrition, results))
    lines += ["## Attrition", "", "Runs by phase, cell and arm. Diverged runs count at chance level in the "
              "statistics; failed runs are excluded.", "", attrition, ""]
    if figures:
        lines += ["## Figures", "", figures_markdown(figures, out), ""]
    lines += ["## Caveats and what could not be computed", ""]
    lines += [f"- {note}" for note in notes] if notes else ["Everything was computed."]
    sided = "two-sided" if hyp.direction == "two-sided" else "one-sided"
    lines += ["", "## Methods", "", METHODS.format(treated=hyp.treated, baseline=hyp.baseline, sided=sided), ""]
    return "\n".join(lines)


def _make_out_dir(out: Path, *, default: bool) -> None:
    """Create the report's directory (and ``figures/``) or say why not, before any statistics are computed."""
    fix = "move it away or pass --out DIR" if default else "choose another --out"
    for path in (out, out / "figures"):
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} is a file, not a directory: the report cannot be written there; {fix}")
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the report directory {out}: {exc.strerror or exc}; {fix}") from None
