"""Markdown and self-contained HTML (figures embedded as base64 PNG) of the report."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import pandas as pd

from tlsweep.report.formatting import CORRECTION_NAMES, fmt_interval, fmt_level, p_text
from tlsweep.report.load import Results
from tlsweep.stats import TrendModel

FIGURE_CAPTIONS = {
    "accuracy_vs_fraction": "Accuracy vs train fraction per arm, one panel per epochs level (mean and 95% CI ribbon; "
    "dots are seeds).",
    "difference_heatmap": "Difference treated − baseline over train fraction × epochs, with significance marks and "
    "the cells where the baseline has caught up (equivalence, outlined).",
    "validation_curves": "Validation accuracy by epoch (median and interquartile band over seeds; thin lines are "
    "seeds).",
    "freeze_depth": "Accuracy vs freeze depth.",
    "tuning_curves": "Tuning curves: expected best validation score after k tuning trials, per cell and arm.",
}


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(empty)_\n"

    def cell(value: object) -> str:
        if isinstance(value, float):
            text = "–" if math.isnan(value) else f"{value:.4g}"
        else:
            text = str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def model_sentences(model: TrendModel, results: Results) -> list[str]:
    """The trend model in words: the advantage at the design's centre and its change along each axis."""
    hyp = results.hypothesis
    if not model.fitted:
        return [f"The trend model was not fitted: {model.method.removeprefix('not fitted: ')}."]
    table = model.coefficients.set_index("term")
    unit = results.unit
    s = results.scale

    def interval(term: str) -> str:
        row = table.loc[term]
        return (
            fmt_interval(row["estimate"], row["ci_low"], row["ci_high"], scale=s, digits=2, signed=True)
            + f" {unit}, two-sided {p_text(row['p'])}"
        )

    sentences = [
        f"The advantage {hyp.treated} − {hyp.baseline} of each cell (its mean paired difference) is modelled "
        f"over the {model.n_cells} cells, the cell being the unit of replication ({model.method}; on the "
        f"{unit} scale, so the slopes are average changes in {unit})."
    ]
    if "treated" in table.index:
        sentences.append(f"At the design's average point, {hyp.treated} − {hyp.baseline} = {interval('treated')}.")
    for term, what in (
        ("treated:log2_fraction", "per doubling of the training data"),
        ("treated:epochs", "per additional epoch"),
    ):
        if term in table.index:
            sentences.append(f"Its change {what}: {interval(term)}.")
    return sentences


def figure_caption(name: str) -> str:
    """The caption of figure ``name`` (a comparison's heatmap: ``difference_heatmap_<treated>_vs_<baseline>``)."""
    if name.startswith("difference_heatmap_") and "_vs_" in name:
        treated, _, baseline = name.removeprefix("difference_heatmap_").partition("_vs_")
        return (
            f"Difference {treated} − {baseline} over train fraction × epochs, with significance marks (the "
            f"family of every cell × comparison) and the cells where {baseline} has caught up (equivalence, "
            "outlined)."
        )
    return FIGURE_CAPTIONS.get(name, name)


def figure_block(name: str, path: Path, out_dir: Path, *, caption: str | None = None) -> str:
    rel = path.relative_to(out_dir).as_posix()
    return f"![{name}]({rel})\n\n*{caption or figure_caption(name)}*\n"


def figures_markdown(figures: dict[str, Path], out_dir: Path) -> str:
    return "\n".join(figure_block(name, path, out_dir) for name, path in figures.items())


_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; } code { background: #f5f5f5; padding: 0 3px; }
h1 { border-bottom: 2px solid #0072B2; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.6em; }
"""


def markdown_to_html(markdown: str, *, title: str, base_dir: Path) -> str:
    """Render the report markdown to one HTML file, embedding every local PNG as a base64 data URI."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def embed(match: re.Match[str]) -> str:
        source = html.unescape(match.group(1))
        path = base_dir / source
        if not path.exists():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


def hypothesis_lines(results: Results, family_size: int) -> list[str]:
    hyp = results.hypothesis
    spec = results.spec
    comparisons = results.comparisons or [hyp]
    signs = {"greater": ">", "less": "<", "two-sided": "≠"}
    if len(comparisons) == 1:
        sign = signs[hyp.direction]
        lines = [
            f"- Claim: {hyp.treated} {sign} {hyp.baseline} on `{hyp.metric}`, contrast {hyp.treated} − "
            f"{hyp.baseline} paired by seed (same seed → same training subset, order and augmentation in both arms).",
            f"- Tests at alpha {fmt_level(hyp.alpha)}, {CORRECTION_NAMES[hyp.correction]} over the primary family of "
            f'{family_size} cell(s); "caught up" only with a TOST at ±{fmt_level(hyp.margin * results.scale)} '
            f"{results.unit}.",
        ]
    else:
        claims = "; ".join(f"{h.treated} {signs[h.direction]} {h.baseline}" for h in comparisons)
        lines = [
            f"- Claims on `{hyp.metric}` ({len(comparisons)} comparisons): {claims}; each contrast treated − "
            "baseline paired by seed (same seed → same training subset, order and augmentation in every arm).",
            f"- Tests at alpha {fmt_level(hyp.alpha)}, {CORRECTION_NAMES[hyp.correction]} over the primary family of "
            f'{family_size} tests (every cell × comparison); "caught up" only with a TOST at '
            f"±{fmt_level(hyp.margin * results.scale)} {results.unit}.",
        ]
    if spec is not None and spec.design.arms is not None:
        lines.append(
            "- Arms: "
            + "; ".join(
                f"{name} ({', '.join(f'{k} {fmt_level(v)}' for k, v in s.items())})"
                for name, s in spec.design.arms.items()
            )
        )
    if spec is not None:
        lines.append(
            "- Factors: "
            + "; ".join(
                f"{name} ∈ {{{', '.join(fmt_level(v) for v in levels)}}}"
                for name, levels in spec.design.factors.items()
            )
        )
        if spec.confirm.adaptive is not None:
            lines.append(
                f"- Confirm phase (adaptive): {spec.confirm.seeds} seed(s) per cell and arm first, then "
                f"{spec.confirm.adaptive.batch} more per look up to {spec.confirm.adaptive.max_seeds} for "
                f"cells not yet decided, configs {', '.join(spec.confirm.configs)}."
            )
        else:
            lines.append(
                f"- Confirm phase: {spec.confirm.seeds} seed(s) per cell and arm for the configs "
                f"{', '.join(spec.confirm.configs)}."
            )
    if results.trials_per_cell:
        lines.append(
            f"- Equal tuning budget: {results.trials_per_cell} trial(s) per cell and arm, selected on "
            f"validation `{results.objective_metric}` ({results.objective_mode}); trial 0 is the fixed "
            "recipe."
        )
    return lines


METHODS = (
    "Per cell, the {treated} − {baseline} contrast uses the confirm runs paired by seed; a run whose partner seed "
    "has no usable run is left out and counted (unpaired tests only when the arms share no seed). The mean "
    "difference Δ gets the 95% t interval of the paired t-test and a simultaneous interval (Bonferroni over the "
    "family, consistent with the corrected decisions); the ratio of means gets Fieller's interval; d_z, Hedges' g "
    "and P(improvement) (Mann–Whitney AUC, bootstrap interval only from 20 seeds on) describe the effect. The "
    "paired t-test decides: both one-sided directions of every cell × comparison form one family corrected at "
    "alpha, so false 'supported' and false 'reversed' claims together stay at most alpha; equivalence (TOST within "
    "the margin) is its own family. The exact sign-flip test is the robustness column, corrected the same way; "
    "where it does not confirm a decided cell (often because its floor 1/2^n cannot reach the threshold) the "
    "verdict says so. The estimand is the difference between the configs each arm's tuning selected, re-run with "
    "fresh seeds: conditional on those selections, not on the best config either arm could reach. Diverged runs "
    "count at chance level and are named in the verdict with a sensitivity check without them; failed runs are "
    "excluded and counted in the attrition table. The trend model fits each cell's Δ over the cells (the cell is "
    "the unit of replication) on the {unit} scale; its slopes are tested in both directions in one family. The "
    "tuning curves use the unbiased U-estimator of the expected best of k trials (Tang et al. 2020) with a 95% "
    "bootstrap band; tuning trials are sequential (TPE), so the curve describes the pool of trials, not random "
    "search."
)
