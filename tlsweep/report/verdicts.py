"""Plain-sentence verdicts: one per cell, one overall, and the crossover where the baseline has caught up."""

from __future__ import annotations

from dataclasses import dataclass

from tlsweep.report.analysis import CellResult, Family
from tlsweep.report.formatting import CORRECTION_NAMES, describe_cell, fmt_interval, fmt_level, p_text
from tlsweep.report.load import Results

LABEL_TEXT = {"supported": "supported", "not supported": "not supported", "equivalent": "equivalent (caught up)",
              "inconclusive": "inconclusive"}


@dataclass(frozen=True)
class Verdict:
    label: str  # supported | not supported | equivalent (caught up) | inconclusive
    sentence: str


def _difference(cell: CellResult, results: Results) -> str:
    diff = cell.contrast.difference
    return fmt_interval(diff.estimate, diff.low, diff.high, scale=results.scale, signed=True) + f" {results.unit}"


def cell_verdict(cell: CellResult, results: Results, family: Family) -> Verdict:
    hyp = results.hypothesis
    contrast, decision = cell.contrast, cell.decision
    where = f"At {describe_cell(cell.levels)}"
    corr = CORRECTION_NAMES[family.correction]
    margin = f"±{fmt_level(hyp.margin * results.scale)} {results.unit}"
    label = LABEL_TEXT[decision.label]
    if not contrast.computable:
        return Verdict(label, f"{where}, nothing could be tested: {decision.reason}.")
    diff = _difference(cell, results)
    if decision.reason.startswith("insufficient replicates"):
        n = contrast.n_pairs if contrast.paired else min(contrast.n_treated, contrast.n_baseline)
        return Verdict(label, f"{where}, {decision.reason} — {n} available: {hyp.treated} − {hyp.baseline} = "
                              f"{diff} is shown without a test.")
    if decision.label == "equivalent":
        extra = " (a difference smaller than the margin is still detectable)" if decision.significant else ""
        return Verdict(label, f"{where}, {hyp.baseline} has caught up: {hyp.treated} − {hyp.baseline} = {diff} lies "
                              f"within {margin} ({corr}-adjusted TOST {p_text(decision.tost_adjusted)}){extra}.")
    if decision.label == "supported":
        verb = {"greater": "beats", "less": "is below", "two-sided": "differs from"}[hyp.direction]
        ratio = contrast.ratio
        ratio_text = f", ratio {fmt_interval(ratio.estimate, ratio.low, ratio.high, digits=2)}×" \
            if ratio.estimate == ratio.estimate else ""
        return Verdict(label, f"{where}, {hyp.treated} {verb} {hyp.baseline} on {hyp.metric} by {diff}{ratio_text} "
                              f"({corr}-adjusted {p_text(decision.p_adjusted)}).")
    if decision.label == "not supported":
        return Verdict(label, f"{where}, the opposite holds: {hyp.treated} − {hyp.baseline} = {diff} "
                              f"({corr}-adjusted {p_text(decision.opposite_adjusted)} in the other direction).")
    return Verdict(label, f"{where}, the data cannot decide: {hyp.treated} − {hyp.baseline} = {diff}, "
                          f"{corr}-adjusted {p_text(decision.p_adjusted)}, TOST "
                          f"{p_text(decision.tost_adjusted)} ({decision.reason}).")


def overall_verdict(family: Family | None, results: Results) -> Verdict:
    hyp = results.hypothesis
    if family is None or not family.cells:
        return Verdict("inconclusive", "No confirm-phase runs of the tuned configs yet, so the hypothesis is not "
                                       "tested; run the sweep to completion and re-render the report.")
    labels = [cell.decision.label for cell in family.cells]
    m = len(labels)
    counts = {label: labels.count(label) for label in ("supported", "equivalent", "not supported", "inconclusive")}
    tally = (f"supported in {counts['supported']} of {m} cell(s), equivalent (caught up) in {counts['equivalent']}, "
             f"not supported in {counts['not supported']}, inconclusive in {counts['inconclusive']}")
    short = [c for c in family.cells if c.decision.reason.startswith("insufficient replicates")]
    if short:
        need = max(c.contrast.needed_replicates for c in short)
        tally += f"; {len(short)} cell(s) have too few replicates to be tested (need {need} seeds)"
    claim = f"{hyp.treated} {'>' if hyp.direction == 'greater' else '<' if hyp.direction == 'less' else '≠'} " \
            f"{hyp.baseline} on {hyp.metric}"
    setting = f"alpha {fmt_level(hyp.alpha)}, {CORRECTION_NAMES[family.correction]} over {m} cell(s)"
    if counts["supported"]:
        where = "; ".join(describe_cell(c.levels) for c in family.cells if c.decision.label == "supported")
        return Verdict("supported", f"The hypothesis ({claim}) is supported at {where} — {tally} ({setting}).")
    if counts["not supported"]:
        return Verdict("not supported", f"The hypothesis ({claim}) is not supported: {tally} ({setting}).")
    if counts["equivalent"] == m:
        return Verdict("equivalent (caught up)", f"{hyp.baseline} is equivalent to {hyp.treated} in every cell "
                                                 f"(within ±{fmt_level(hyp.margin * results.scale)} {results.unit}): "
                                                 f"{tally} ({setting}).")
    return Verdict("inconclusive", f"The hypothesis ({claim}) is neither established nor refuted: {tally} "
                                   f"({setting}).")


def _grid_position(cell: CellResult) -> tuple[float, float]:
    """(train fraction, epochs) of a cell; a factor the design does not vary counts as one level (0)."""
    return float(cell.levels.get("train_fraction") or 0), float(cell.levels.get("epochs") or 0)


def crossover(family: Family | None, results: Results) -> str:
    """The smallest (train fraction, epochs) cells where the baseline is equivalent (Pareto-minimal), per level of
    any other factor."""
    hyp = results.hypothesis
    margin = f"±{fmt_level(hyp.margin * results.scale)} {results.unit}"
    if family is None or not family.cells:
        return "Crossover: not computed (no confirm-phase results)."
    equivalent = [c for c in family.cells if c.decision.equivalent]
    if not equivalent:
        return (f"Crossover: none — {hyp.baseline} is not shown equivalent to {hyp.treated} (within {margin}) in any "
                "cell.")
    groups: dict[tuple, list[CellResult]] = {}
    for cell in equivalent:
        key = tuple((k, v) for k, v in cell.levels.items() if k not in ("train_fraction", "epochs"))
        groups.setdefault(key, []).append(cell)
    parts = []
    for key, cells in groups.items():
        minimal = []
        for cell in cells:
            f, e = _grid_position(cell)
            dominated = any(
                other is not cell and _grid_position(other)[0] <= f and _grid_position(other)[1] <= e
                and _grid_position(other) != (f, e)
                for other in cells
            )
            if not dominated:
                minimal.append(f"train fraction {fmt_level(f)} with {fmt_level(e)} epochs")
        prefix = ", ".join(f"{k} {fmt_level(v)}" for k, v in key)
        parts.append((f"with {prefix}: " if prefix else "") + " and ".join(minimal))
    return (f"Crossover: {hyp.baseline} is first equivalent to {hyp.treated} (within {margin}, TOST) at "
            + "; ".join(parts) + ".")
