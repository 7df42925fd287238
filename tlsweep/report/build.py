"""``build_report``: load → analyse → tables, verdicts, figures → report.md / report.html."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tlsweep.errors import StoreError, TlsweepError
from tlsweep.report.analysis import Analysis, ComparisonAnalysis, Family, analyse, cell_levels
from tlsweep.report.classes import ClassView, class_view, pick_confusion_cell, summed_confusion
from tlsweep.report.formatting import CORRECTION_NAMES, describe_cell
from tlsweep.report.health import CellHealth, EdgeOptimum, cell_health, edge_optima
from tlsweep.report.load import Results, is_accuracy_like, load_results
from tlsweep.report.render import (
    METHODS,
    figure_block,
    figures_markdown,
    hypothesis_lines,
    markdown_table,
    markdown_to_html,
    model_sentences,
)
from tlsweep.report.tables import (
    arms_table,
    attrition_display,
    class_display,
    design_health_lines,
    family_display,
    family_table,
    model_table,
    power_notes,
    tuning_table,
    tuning_verdicts,
)
from tlsweep.report.verdicts import (
    Verdict,
    cell_verdict,
    crossover,
    family_extent,
    overall_verdict,
    trend_clause,
)
from tlsweep.spec import SweepSpec

FORMATS = ("md", "html")


@dataclass
class ComparisonReport:
    """One comparison's part of the report (tables in the metric's own units)."""

    treated: str
    baseline: str
    direction: str
    cell_table: pd.DataFrame  # primary family (equal budget), one row per cell
    recipe_table: pd.DataFrame  # secondary family (fixed recipe), may be empty
    model: pd.DataFrame  # design-model coefficients of this comparison, may be empty
    overall: Verdict
    cell_verdicts: dict[str, Verdict]  # cell_id → verdict
    crossover: str
    heatmap: Path | None  # the difference heatmap
    trends: pd.DataFrame = field(default_factory=pd.DataFrame)
    health: dict[str, CellHealth] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.treated} vs {self.baseline}"

    @property
    def verdict_text(self) -> str:
        return f"{self.overall.label}: {self.overall.sentence} {self.crossover}"


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
    trends: pd.DataFrame = field(default_factory=pd.DataFrame)  # trend tests (term, points, p, claim)
    health: dict[str, CellHealth] = field(default_factory=dict)  # cell_id → steps, arms at chance
    edge_optima: list[EdgeOptimum] = field(default_factory=list)  # selected values at an end of their range
    comparisons: list[ComparisonReport] = field(default_factory=list)  # every comparison; the fields above: the first
    classes: ClassView | None = None  # per-class test accuracy per cell × arm (descriptive)
    confusion_cell: str | None = None  # the cell whose confusion matrices are drawn (figures ``confusion_<arm>``)

    @property
    def verdict_text(self) -> str:
        if len(self.comparisons) > 1:
            return " ".join(f"[{part.name}] {part.verdict_text}" for part in self.comparisons)
        return f"{self.overall.label}: {self.overall.sentence} {self.crossover}"


def build_report(
    results_dir: Path,
    *,
    out_dir: Path | None = None,
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
    n_resamples: int = 9999,
    confusion_cell: str | None = None,
) -> ReportResult:
    """Write the statistical report of a results directory from its Parquet files alone.

    Args:
        results_dir: a local results directory (``runs/<name>``); for results on S3/GCS use ``tlsweep report``.
        out_dir: where to write (default ``<results_dir>/report``).
        seed: drives every bootstrap and permutation resample, so the same results give the same report.
        formats: any of ``"md"``, ``"html"``, ``"png"``.
        n_resamples: bootstrap and permutation resamples per test.
        confusion_cell: the cell (its id) whose confusion matrices are drawn; default the cell with the most
            training data.

    Returns:
        ``ReportResult``: the paths written (``markdown_path``, ``html_path``, ``figures``) and the content as data:
        the per-cell tables, the design model, tuning curves, attrition, the verdict per cell and overall, the
        crossover sentence, notes and the spec.

    Raises:
        StoreError: when the directory holds no results (run ``tlsweep run SPEC`` first).
        TlsweepError: ``confusion_cell`` names no cell of the results.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise TlsweepError(f"unknown report format(s) {unknown}; choose from {list(FORMATS)}")
    results = load_results(Path(results_dir))
    confusion_at = pick_confusion_cell(results, confusion_cell)
    out = Path(out_dir) if out_dir is not None else results.root / "report"
    _make_out_dir(out, default=out_dir is None)
    rng = np.random.default_rng(seed)
    analysis = analyse(results, rng=rng, n_resamples=n_resamples)
    from tlsweep.report.figures import write_figures

    figures = write_figures(results, analysis, out / "figures", rng=rng)
    from tlsweep.report.figures import heatmap_name, write_confusion_figures

    classes = class_view(results)
    confusions = {}
    if confusion_at is not None and not classes.empty:
        cell_text = describe_cell(cell_levels(results)[confusion_at])
        drawn = summed_confusion(results, confusion_at, len(classes.class_names))
        confusions = write_confusion_figures(drawn, classes.class_names, cell_text, out / "figures")
    figures.update(confusions)

    tuning = tuning_table(analysis.tuning, results)
    edges = edge_optima(results)
    parts = [
        _comparison_report(
            results.for_comparison(part.hypothesis), part, figures.get(heatmap_name(results, part.hypothesis))
        )
        for part in analysis.comparisons
    ]
    first = parts[0]
    notes = _could_not_compute(results, analysis)
    class_lines = _class_section(results, classes, confusion_at, confusions, out)
    markdown = _markdown(results, analysis, out, figures, parts, tuning, notes, edges, class_lines)
    md_path = html_path = None
    if "md" in formats:
        md_path = out / "report.md"
        md_path.write_text(markdown, encoding="utf-8")
    if "html" in formats:
        html_path = out / "report.html"
        html_path.write_text(
            markdown_to_html(markdown, title=f"tlsweep report: {results.name}", base_dir=out), encoding="utf-8"
        )
    return ReportResult(
        out,
        md_path,
        html_path,
        figures,
        first.cell_table,
        first.recipe_table,
        analysis.attrition,
        tuning,
        first.model,
        first.overall,
        first.cell_verdicts,
        first.crossover,
        notes,
        results.spec,
        first.trends,
        first.health,
        edges,
        parts,
        classes,
        confusion_at if confusions else None,
    )


def _comparison_report(view: Results, part: ComparisonAnalysis, heatmap: Path | None) -> ComparisonReport:
    """Tables and verdicts of one comparison (``view`` reports on it)."""
    cell_table = family_table(part.primary, view) if part.primary else pd.DataFrame()
    recipe_table = family_table(part.secondary, view) if part.secondary else pd.DataFrame()
    model = part.model.coefficients if part.model is not None else pd.DataFrame()
    health = cell_health(view)
    overall = overall_verdict(part.primary, view, health=health, trends=part.trends)
    cross = crossover(part.primary, view, health)
    verdicts = (
        {c.cell_id: cell_verdict(c, view, part.primary, health.get(c.cell_id)) for c in part.primary.cells}
        if part.primary
        else {}
    )
    if not cell_table.empty:
        cell_table["informative"] = [health[c].informative if c in health else True for c in cell_table["cell_id"]]
        cell_table["optimizer_steps"] = [health[c].steps if c in health else None for c in cell_table["cell_id"]]
        cell_table["sentence"] = [
            verdicts[c].sentence if c in verdicts else s
            for c, s in zip(cell_table["cell_id"], cell_table["sentence"], strict=True)
        ]
    trends = pd.DataFrame([vars(t) for t in part.trends])
    return ComparisonReport(
        part.hypothesis.treated,
        part.hypothesis.baseline,
        part.hypothesis.direction,
        cell_table,
        recipe_table,
        model,
        overall,
        verdicts,
        cross,
        heatmap,
        trends,
        health,
    )


def _could_not_compute(results: Results, analysis: Analysis) -> list[str]:
    notes = list(results.notes) + list(analysis.notes)
    several = len(analysis.comparisons) > 1
    for part in analysis.comparisons:
        which = f"{part.hypothesis.name}, " if several else ""
        for family in (part.primary, part.secondary):
            if family is None:
                continue
            for cell in family.cells:
                for note in cell.contrast.notes:
                    notes.append(f"({which}{family.config_kind}) {describe_cell(cell.levels)}: {note}")
        if part.model is not None:
            model_name = f"trend model of {part.hypothesis.name}" if several else "trend model"
            notes += [f"{model_name}: {note}" for note in part.model.notes]
            if not part.model.fitted:
                notes.append(f"{model_name} {part.model.method}")
        if part.primary is not None:
            notes += margin_warnings(part.primary, results.for_comparison(part.hypothesis))
    if not analysis.tuning:
        notes.append("no tuning-phase trials with an objective value: no tuning curves")
    return list(dict.fromkeys(notes))


def margin_warnings(family: Family, results: Results) -> list[str]:
    """Cells where the equivalence margin is large against the error rate (1 − accuracy) of the better arm: there
    "equivalent" admits one arm making several times the other's errors."""
    if not results.accuracy_like:
        return []
    margin, s = results.hypothesis.margin, results.scale
    notes = []
    for cell in family.cells:
        best = max(cell.contrast.mean_treated, cell.contrast.mean_baseline)
        error = 1.0 - best
        if not np.isfinite(best) or error <= 0 or margin < error / 2:
            continue
        notes.append(
            f"{describe_cell(cell.levels)}: the equivalence margin ±{margin * s:g} {results.unit} is large against "
            f"the error rate there ({error * 100:.1f} % at {best * 100:.1f} % accuracy): 'equivalent' admits one arm "
            f"making {(error + margin) / error:.1f}× the other's errors; a margin of at most "
            f"{error * s / 2:.2g} {results.unit} (half the error rate) keeps the claim meaningful"
        )
    return notes


def _family_section(
    title: str, family: Family, table: pd.DataFrame, results: Results, health: dict[str, CellHealth]
) -> list[str]:
    lines = [f"## {title}", ""]
    if family.sequential:
        lines.append(
            f"Adaptive confirm seeds: each cell's verdict is the decision of the {family.sequential} "
            f'(README: "Adaptive confirm seeds"). Means and differences in {results.unit}.'
        )
    else:
        lines.append(
            f"Both directions of every cell ({2 * family.size} one-sided t-tests over "
            f"{family_extent(family, results)}) are {CORRECTION_NAMES[family.correction]}-corrected as one "
            f"family at alpha {results.hypothesis.alpha:g}, so false 'supported' and 'reversed' claims together "
            f"stay at most alpha; the most significant test must reach p ≤ {family.threshold:.3g}. The "
            f"simultaneous interval ({family.simultaneous:.4g} per cell) covers every cell's Δ at once and agrees "
            f"with the corrected decisions. Means and differences in {results.unit}."
        )
    lines += ["", markdown_table(family_display(table, results, health, family)), ""]
    verdicts = [cell_verdict(c, results, family, health.get(c.cell_id)) for c in family.cells]
    lines += [f"- **{v.label}** — {v.sentence}" for v in verdicts]
    unpaired = [
        f"{describe_cell(c.levels)} ({c.contrast.design})"
        for c in family.cells
        if c.contrast.computable and not c.contrast.paired
    ]
    if unpaired:
        lines += ["", "Unpaired design: " + "; ".join(unpaired) + "."]
    dropped = [f"{describe_cell(c.levels)}: {c.contrast.dropped}" for c in family.cells if c.contrast.dropped]
    if dropped:
        lines += [
            "",
            "Runs left out for lack of a partner seed (analysed as complete pairs): " + "; ".join(dropped) + ".",
        ]
    return [*lines, ""]


def _model_lines(part: ComparisonAnalysis, view: Results) -> list[str]:
    """The trend model of one comparison (the cell as the unit) and its trend tests."""
    if part.model is None:
        return ["Not fitted: no confirm-phase results.", ""]
    lines: list[str] = []
    model = part.model
    if model.fitted:
        lines += [f"Model: `{model.formula}` — {model.method}.", ""]
    lines += [" ".join(model_sentences(model, view)), ""]
    table = model_table(model, view)
    if not table.empty:
        lines += [markdown_table(table), ""]
    if part.trends:
        lines += [
            "Trend (the second half of the hypothesis: does the advantage shrink as data and epochs grow? Each "
            f"slope is tested in both directions, one family): {trend_clause(part.trends, view)}.",
            "",
        ]
    return lines


def _markdown(
    results: Results,
    analysis: Analysis,
    out: Path,
    figures: dict[str, Path],
    parts: list[ComparisonReport],
    tuning: pd.DataFrame,
    notes: list[str],
    edges: list[EdgeOptimum],
    class_lines: list[str],
) -> str:
    hyp = results.hypothesis
    trials, epochs = results.trials, results.epochs
    several = len(parts) > 1
    views = [results.for_comparison(part.hypothesis) for part in analysis.comparisons]
    n_cells = len(analysis.primary.cells) if analysis.primary else 0
    family_size = n_cells * len(parts)
    lines = [
        f"# tlsweep report: {results.name}",
        "",
        f"Results directory `{results.root}`: {len(trials)} trial(s) ({int((trials['phase'] == 'tune').sum())} "
        f"tuning, {int((trials['phase'] == 'confirm').sum())} confirm), {len(epochs)} epoch row(s).",
        "",
        "## Verdict",
        "",
    ]
    if several:
        lines += [
            f"{len(parts)} comparisons, tested in one family of {n_cells} cell(s) × {len(parts)} "
            f"comparisons ({CORRECTION_NAMES[hyp.correction]}).",
            "",
        ]
    for part, section in zip(parts, analysis.comparisons, strict=True):
        prefix = f"{part.name}: " if several else "Overall: "
        lines += [f"**{prefix}{part.overall.label}.** {part.overall.sentence}", "", part.crossover, ""]
        if part.cell_verdicts and section.primary is not None:
            lines += [
                f"- {describe_cell(next(c.levels for c in section.primary.cells if c.cell_id == cell_id))}: "
                f"**{verdict.label}**"
                for cell_id, verdict in part.cell_verdicts.items()
            ] + [""]
    lead: dict[str, Path] = {
        name: figures[name] for name in ("accuracy_vs_fraction", "difference_heatmap") if name in figures
    }
    lead.update({part.heatmap.stem: part.heatmap for part in parts if several and part.heatmap is not None})
    if lead:
        lines += ["## The picture", "", figures_markdown(lead, out), ""]
    if several:
        lines += ["## All arms", "", markdown_table(arms_table(results)), ""]
    lines += class_lines
    lines += ["## Hypothesis and design", "", *hypothesis_lines(results, family_size), ""]
    for part, section, view in zip(parts, analysis.comparisons, views, strict=True):
        title = f"{part.name}: " if several else ""
        if section.primary is not None:
            lines += _family_section(
                f"{title}(B) Equal tuning budget — primary family", section.primary, part.cell_table, view, part.health
            )
        if section.secondary is not None:
            lines += _family_section(
                f"{title}(A) Fixed recipe — secondary family (recipe tuned for fine-tuning; biased toward pretrained)",
                section.secondary,
                part.recipe_table,
                view,
                cell_health(view, "recipe"),
            )
        if several:
            lines += [f"### {part.name}: the whole design", "", *_model_lines(section, view)]
    if not several:
        lines += ["## The whole design", "", *_model_lines(analysis.comparisons[0], results)]
    lines += ["## Design health", "", *design_health_lines(results, parts[0].health, edges), ""]
    power = [
        f"- {f'{part.name}: ' if several else ''}{n}"
        for part, view in zip(parts, views, strict=True)
        if not part.cell_table.empty
        for n in power_notes(part.cell_table, view)
    ]
    if power:
        lines += ["## Seeds and power", "", *power, ""]
    lines += ["## Tuning fairness", ""]
    if tuning.empty:
        lines += ["No tuning-phase trials with an objective value.", ""]
    else:
        lines += [
            f"- {f'{view.hypothesis.name}: ' if several else ''}{s}"
            for view in views
            for s in tuning_verdicts(tuning, view)
        ]
        display = tuning.drop(columns=["cell_id"]).round(2)
        lines += [
            "",
            f"Validation `{results.objective_metric}` "
            f"({'points' if is_accuracy_like(results.objective_metric) else 'units'}); expected best after "
            "k trials by the U-estimator, band = 95% bootstrap.",
            "",
            markdown_table(display),
            "",
        ]
        if "recipe" in set(results.trials["config_kind"]) and analysis.secondary is not None:
            lines += [
                "The test-set verdict at k = 1 is comparison (A) above (fixed recipe, confirm runs); at k = K "
                "it is comparison (B).",
                "",
            ]
    attrition = markdown_table(attrition_display(analysis.attrition, results))
    lines += [
        "## Attrition",
        "",
        "Runs by phase, cell and arm. Diverged runs count at chance level in the statistics; failed runs are excluded.",
        "",
        attrition,
        "",
    ]
    placed = {*lead.values(), *(path for name, path in figures.items() if name.startswith("confusion_"))}
    shown = {name: path for name, path in figures.items() if path not in placed}
    if shown:
        lines += ["## Figures", "", figures_markdown(shown, out), ""]
    lines += ["## Caveats and what could not be computed", ""]
    lines += [f"- {note}" for note in notes] if notes else ["Everything was computed."]
    treated, baseline = ("treated", "baseline") if several else (hyp.treated, hyp.baseline)
    lines += ["", "## Methods", "", METHODS.format(treated=treated, baseline=baseline, unit=results.unit), ""]
    return "\n".join(lines)


def _class_section(
    results: Results, view: ClassView, cell: str | None, confusions: dict[str, Path], out: Path
) -> list[str]:
    """ "Per-class accuracy": a table per cell (each arm's mean over its confirm seeds, the paired difference per
    comparison) and the confusion matrix of each arm in one cell. Descriptive: no test, no claim."""
    lines = ["## Per-class accuracy", ""]
    if view.empty:
        return [*lines, *(f"{m[0].upper()}{m[1:]}." for m in view.missing), ""]
    several = len(results.comparisons) > 1
    lines += [
        "Descriptive only: no test is made on these numbers and no claim rests on them; the verdict above is the "
        "test. Each arm's mean per-class test accuracy (recall: the share of a class's test images predicted as "
        "that class), in points, over its confirm seeds of the selected config (n = seeds with per-class results; "
        f"– = no test images of the class). Δ = the mean over paired seeds of {'treated − baseline' if several else results.hypothesis.name.replace(' vs ', ' − ')}.",
        "",
    ]
    levels = cell_levels(results)
    for cell_id in levels:
        if cell_id not in set(view.accuracy["cell_id"]):
            continue
        lines += [
            f"### {describe_cell(levels[cell_id])} (`{cell_id}`)",
            "",
            markdown_table(class_display(view, cell_id)),
        ]
    if cell is not None and confusions:
        lines += [
            f"Confusion matrices in {describe_cell(levels[cell])} (`{cell}`): by default the cell with the most "
            "training data; `tlsweep report --confusion-cell CELL_ID` draws another.",
            "",
        ]
        for name, path in confusions.items():
            caption = (
                f"Test confusion of {name.removeprefix('confusion_')} in {describe_cell(levels[cell])}, summed over "
                "its confirm seeds, each row normalised to its true class (diagonal = each class's accuracy over "
                "the pooled seeds)."
            )
            lines.append(figure_block(name, path, out, caption=caption))
    elif cell is not None:
        lines += [f"No confusion matrices: no confirm run in `{cell}` records test_confusion.", ""]
    else:
        lines += ["No confusion matrices: no confirm run records test_confusion.", ""]
    if view.missing:
        lines += ["Missing:", "", *(f"- {m}" for m in view.missing), ""]
    return lines


def _make_out_dir(out: Path, *, default: bool) -> None:
    """Create the report's directory (and ``figures/``) or say why not, before any statistics are computed."""
    fix = "move it away or pass --out DIR" if default else "choose another --out"
    for path in (out, out / "figures"):
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} is a file, not a directory: the report cannot be written there; {fix}")
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker is not None else exc.strerror or str(exc)
        raise StoreError(f"cannot create the report directory {out}: {why}; {fix}") from None
