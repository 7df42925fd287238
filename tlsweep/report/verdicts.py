"""Plain-sentence verdicts: one per cell, one overall (a region and a trend), and the crossover of both kinds.

The hypothesis is a claim about a *region* (little data, few epochs: ``SweepSpec.hypothesis_region``) and a
*trend* (the advantage shrinks as data and epochs grow). The overall verdict is "supported" only when every
informative cell of the region is supported and none is reversed; otherwise its label says where it holds or
where it is reversed. Cells where every arm sits at chance are uninformative and left out of the region verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlsweep.report.analysis import CellResult, Family
from tlsweep.report.formatting import CORRECTION_NAMES, describe_cell, fmt_interval, fmt_level, p_text
from tlsweep.report.health import CellHealth
from tlsweep.report.load import Results
from tlsweep.spec import default_region
from tlsweep.stats import TrendTest

LABEL_TEXT = {
    "supported": "supported",
    "not supported": "not supported (reversed)",
    "equivalent": "equivalent (caught up)",
    "inconclusive": "inconclusive",
}


@dataclass(frozen=True)
class Verdict:
    label: str  # cell: supported | not supported | equivalent (caught up) | inconclusive | uninformative (at chance)
    sentence: str  # overall: "supported", "supported only at …", "reversed at …", … (see ``overall_verdict``)
    kind: str = ""  # overall: the label without places (supported | supported only at | reversed | …)


def _difference(cell: CellResult, results: Results) -> str:
    diff = cell.contrast.difference
    return fmt_interval(diff.estimate, diff.low, diff.high, scale=results.scale, signed=True) + f" {results.unit}"


def cell_verdict(cell: CellResult, results: Results, family: Family, health: CellHealth | None = None) -> Verdict:
    """The cell's verdict sentence, with what the reader must know beside it: the deciding look of an adaptive sweep,
    an exact test that does not confirm it, and the runs that diverged (with the verdict without them)."""
    verdict = _cell_verdict(cell, results, family, health)
    extra = []
    reason = cell.decision.reason
    if family.sequential and reason.startswith("group-sequential") and reason not in verdict.sentence:
        extra.append(f"({reason}.)")
    if cell.decision.robust_note and not verdict.label.startswith("uninformative"):
        extra.append(f"Robustness: {cell.decision.robust_note}.")
    if cell.diverged:
        runs = ", ".join(f"{n} {arm} run(s)" for arm, n in cell.diverged.items())
        if cell.without_diverged is None or cell.without_diverged == cell.decision.label:
            holds = "the verdict holds without them"
        else:
            holds = f"without them the cell reads {LABEL_TEXT[cell.without_diverged]}"
        extra.append(f"Diverged: {runs}, scored at chance; {holds}.")
    if not extra:
        return verdict
    return Verdict(verdict.label, " ".join([verdict.sentence, *extra]), verdict.kind)


def _cell_verdict(cell: CellResult, results: Results, family: Family, health: CellHealth | None = None) -> Verdict:
    hyp = results.hypothesis
    contrast, decision = cell.contrast, cell.decision
    where = f"At {describe_cell(cell.levels)}"
    if health is not None and health.at_chance:
        means = ", ".join(f"{a.arm} {fmt_level(round(a.mean * results.scale, 1))}" for a in health.arms)
        steps = f" after {health.steps} optimizer steps" if health.steps is not None else ""
        return Verdict(
            "uninformative (at chance)",
            f"{where}, every arm is at chance ({means}; chance "
            f"{fmt_level(round(health.arms[0].chance * results.scale, 1))}){steps}: the cell can neither "
            "support nor refute the hypothesis and is left out of the region verdict.",
        )
    corr = CORRECTION_NAMES[family.correction]
    if family.sequential:  # the p-values are the deciding look's nominal ones, tested against its boundary
        corr = "deciding look's nominal"
    margin = f"±{fmt_level(hyp.margin * results.scale)} {results.unit}"
    label = LABEL_TEXT[decision.label]
    if not contrast.computable:
        return Verdict(label, f"{where}, nothing could be tested: {decision.reason}.")
    diff = _difference(cell, results)
    if decision.label == "equivalent":
        extra = " (a difference smaller than the margin is still detectable)" if decision.significant else ""
        return Verdict(
            label,
            f"{where}, {hyp.baseline} has caught up: {hyp.treated} − {hyp.baseline} = {diff} lies "
            f"within {margin} ({corr}-adjusted TOST {p_text(decision.tost_adjusted)}){extra}.",
        )
    if decision.label == "supported":
        verb = {"greater": "beats", "less": "is below", "two-sided": "differs from"}[hyp.direction]
        ratio = contrast.ratio
        ratio_text = (
            f", ratio {fmt_interval(ratio.estimate, ratio.low, ratio.high, digits=2)}×"
            if ratio.estimate == ratio.estimate
            else ""
        )
        return Verdict(
            label,
            f"{where}, {hyp.treated} {verb} {hyp.baseline} on {hyp.metric} by {diff}{ratio_text} "
            f"({corr}-adjusted {p_text(decision.p_adjusted)}).",
        )
    if decision.label == "not supported":
        return Verdict(
            label,
            f"{where}, the opposite holds: {hyp.treated} − {hyp.baseline} = {diff} "
            f"({corr}-adjusted {p_text(decision.opposite_adjusted)} in the other direction).",
        )
    return Verdict(
        label,
        f"{where}, the data cannot decide: {hyp.treated} − {hyp.baseline} = {diff}, "
        f"{corr}-adjusted {p_text(decision.p_adjusted)}, TOST "
        f"{p_text(decision.tost_adjusted)} ({decision.reason}).",
    )


def family_extent(family: Family, results: Results) -> str:
    """ "4 cell(s)", or "4 cell(s) × 3 comparisons" when the family spans several comparisons."""
    several = len(results.comparisons) > 1
    return f"{len(family.cells)} cell(s)" + (f" × {len(results.comparisons)} comparisons" if several else "")


def region_of(results: Results, family: Family) -> dict[str, list[Any]]:
    """The hypothesis region: from the spec, else the smallest train fraction × the fewest epochs found."""
    if results.spec is not None:
        return results.spec.hypothesis_region()
    levels: dict[str, list[Any]] = {}
    for cell in family.cells:
        for name, value in cell.levels.items():
            if value is not None and value not in levels.setdefault(name, []):
                levels[name].append(value)
    return default_region(levels)


def in_region(levels: dict[str, Any], region: dict[str, list[Any]]) -> bool:
    return all(levels.get(name) in allowed for name, allowed in region.items())


def describe_region(region: dict[str, list[Any]]) -> str:
    if not region:
        return "every cell"
    return " × ".join(
        describe_cell({name: levels[0]})
        if len(levels) == 1
        else f"{describe_cell({name: '/'.join(fmt_level(v) for v in levels)})}"
        for name, levels in region.items()
    )


def _informative(cell: CellResult, health: dict[str, CellHealth] | None) -> bool:
    return health is None or cell.cell_id not in health or health[cell.cell_id].informative


def _places(cells: list[CellResult]) -> str:
    """ "train fraction 0.1 × 2 epochs, train fraction 0.3 × 2 epochs and …" (cells in a list)."""
    names = [" × ".join(describe_cell({k: v}) for k, v in c.levels.items()) or "the single cell" for c in cells]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


TREND_WHAT = {"treated:log2_fraction": "per doubling of the training data", "treated:epochs": "per additional epoch"}


def trend_clause(trends: list[TrendTest] | None, results: Results) -> str:
    """ "the advantage shrinks per doubling of the training data (−4.0 [−5.9, −2.1] points; Holm p = …)": each term's
    claim (shrinks / grows, toward or away from no difference) only when significant in the trend family."""
    if not trends:
        return ""
    hyp = results.hypothesis
    corr = CORRECTION_NAMES[hyp.correction]
    parts = []
    for test in trends:
        change = fmt_interval(
            test.points, test.points_low, test.points_high, scale=results.scale, digits=2, signed=True
        )
        detail = (
            f"{change} {results.unit}; {corr} {p_text(test.p_adjusted)} over both directions of {len(trends)} term(s)"
        )
        if test.claim:
            parts.append(f"{test.claim} {TREND_WHAT[test.term]} ({detail}, significant)")
        else:
            parts.append(f"shows no significant trend {TREND_WHAT[test.term]} ({detail})")
    return f"the {hyp.treated} advantage " + " and ".join(parts)


def overall_verdict(
    family: Family | None,
    results: Results,
    *,
    health: dict[str, CellHealth] | None = None,
    trends: list[TrendTest] | None = None,
) -> Verdict:
    """The verdict over the region, with one quotable sentence: where the treated arm wins, where the baseline wins
    (a reversal), where they are equivalent, where the data cannot decide, which cells are uninformative, and the
    trend.

    Labels: ``supported`` (every informative region cell supported, none reversed); ``reversed at …`` (a region
    cell, else any cell, significant in the other direction, nowhere supported in the region); ``supported only at
    …`` (supported somewhere, but not throughout the region); ``equivalent (caught up)`` (every informative cell
    equivalent); ``not supported`` (the region equivalent, nothing supported); ``uninformative`` (every cell at
    chance); ``inconclusive`` (nothing decided).
    """
    hyp = results.hypothesis
    if family is None or not family.cells:
        return Verdict(
            "inconclusive",
            "No confirm-phase runs of the tuned configs yet, so the hypothesis is not "
            "tested; run the sweep to completion and re-render the report.",
            "inconclusive",
        )
    region = region_of(results, family)
    informative = [c for c in family.cells if _informative(c, health)]
    dead = [c for c in family.cells if not _informative(c, health)]
    in_reg = [c for c in informative if in_region(c.levels, region)]
    of = {
        label: [c for c in informative if c.decision.label == label]
        for label in ("supported", "not supported", "equivalent", "inconclusive")
    }
    reg = {label: [c for c in in_reg if c.decision.label == label] for label in of}
    sign = {"greater": ">", "less": "<", "two-sided": "≠"}[hyp.direction]
    claim = f"{hyp.treated} {sign} {hyp.baseline} on {hyp.metric} in its region, {describe_region(region)}"
    setting = (
        f"alpha {fmt_level(hyp.alpha)}, {CORRECTION_NAMES[family.correction]} over {family_extent(family, results)}"
    )
    if not informative:
        kind, label = "uninformative", "uninformative"
    elif in_reg and len(reg["supported"]) == len(in_reg):
        kind, label = "supported", "supported"
    elif reg["not supported"]:
        kind, label = "reversed", f"reversed at {_places(reg['not supported'])}"
    elif of["supported"]:
        kind, label = "supported only at", f"supported only at {_places(of['supported'])}"
    elif of["not supported"]:
        kind, label = "reversed", f"reversed at {_places(of['not supported'])}"
    elif len(of["equivalent"]) == len(informative):
        kind, label = "equivalent (caught up)", "equivalent (caught up)"
    elif in_reg and len(reg["equivalent"]) == len(in_reg):
        kind, label = "not supported", "not supported"
    else:
        kind, label = "inconclusive", "inconclusive"
    reading = {
        "supported": "is supported",
        "reversed": "is reversed",
        "supported only at": "holds only in part",
        "equivalent (caught up)": f"is not supported: {hyp.baseline} has caught up everywhere",
        "not supported": f"is not supported: {hyp.baseline} has caught up in the region",
        "uninformative": "cannot be tested: every arm is at chance in every cell",
        "inconclusive": "is neither established nor refuted",
    }[kind]
    parts = []
    if of["supported"]:
        won = {
            "greater": f"{hyp.treated} wins",
            "less": f"{hyp.treated} is below {hyp.baseline} as claimed",
            "two-sided": f"{hyp.treated} differs from {hyp.baseline}",
        }[hyp.direction]
        parts.append(f"{won} at {_places(of['supported'])}")
    if of["not supported"]:
        opposite = f"{hyp.baseline} wins" if hyp.direction == "greater" else f"{hyp.treated} is above {hyp.baseline}"
        parts.append(f"{opposite} (a reversal) at {_places(of['not supported'])}")
    if of["equivalent"]:
        parts.append(
            f"the arms are equivalent (within ±{fmt_level(hyp.margin * results.scale)} {results.unit}) at "
            f"{_places(of['equivalent'])}"
        )
    if of["inconclusive"]:
        parts.append(f"the data cannot decide at {_places(of['inconclusive'])}")
    if dead:
        parts.append(
            f"{_places(dead)} {'is' if len(dead) == 1 else 'are'} uninformative (every arm at chance) and left out"
        )
    if not in_reg and informative:
        parts.append("no informative cell lies in the region")
    trend = trend_clause(trends, results)
    if trend:
        parts.append(trend)
    sentence = f"The hypothesis ({claim}) {reading}: " + "; ".join(parts) + f" ({setting})."
    return Verdict(label, sentence, kind)


def crossover_cells(
    family: Family | None, results: Results, health: dict[str, CellHealth] | None = None
) -> dict[str, dict[tuple[tuple[str, Any], ...], list[CellResult]]]:
    """The Pareto-minimal (train fraction, epochs) cells where the baseline first catches up (``"equivalent"``,
    TOST) and where it first overtakes (``"overtakes"``, significant in the other direction), per level of any other
    factor (the key); uninformative cells are left out."""
    out: dict[str, dict[tuple[tuple[str, Any], ...], list[CellResult]]] = {"equivalent": {}, "overtakes": {}}
    if family is None:
        return out
    for kind, label in (("equivalent", "equivalent"), ("overtakes", "not supported")):
        groups: dict[tuple[tuple[str, Any], ...], list[CellResult]] = {}
        for cell in family.cells:
            if cell.decision.label != label or not _informative(cell, health):
                continue
            key = tuple((k, v) for k, v in cell.levels.items() if k not in ("train_fraction", "epochs"))
            groups.setdefault(key, []).append(cell)
        for key, cells in groups.items():
            positions = [_grid_position(cell) for cell in cells]
            out[kind][key] = [
                cell
                for cell, at in zip(cells, positions, strict=True)
                if not any(_dominates(other, at) for other in positions)
            ]
    return out


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at most ``b`` in both train fraction and epochs, and a different grid point."""
    return a[0] <= b[0] and a[1] <= b[1] and a != b


def _grid_position(cell: CellResult) -> tuple[float, float]:
    """(train fraction, epochs) of a cell; a factor the design does not vary counts as one level (0)."""
    return float(cell.levels.get("train_fraction") or 0), float(cell.levels.get("epochs") or 0)


def _points(groups: dict[tuple[tuple[str, Any], ...], list[CellResult]]) -> str:
    parts = []
    for key, cells in groups.items():
        minimal = " and ".join(
            f"train fraction {fmt_level(_grid_position(c)[0])} with {fmt_level(_grid_position(c)[1])} epochs"
            for c in cells
        )
        prefix = ", ".join(f"{k} {fmt_level(v)}" for k, v in key)
        parts.append((f"with {prefix}: " if prefix else "") + minimal)
    return "; ".join(parts)


def crossover(family: Family | None, results: Results, health: dict[str, CellHealth] | None = None) -> str:
    """Where the baseline first catches up (equivalent, TOST) and where it first overtakes (significant in the other
    direction): the Pareto-minimal train fraction × epochs cells, per level of any other factor."""
    hyp = results.hypothesis
    margin = f"±{fmt_level(hyp.margin * results.scale)} {results.unit}"
    if family is None or not family.cells:
        return "Crossover: not computed (no confirm-phase results)."
    found = crossover_cells(family, results, health)
    catch, over = found["equivalent"], found["overtakes"]
    if not catch and not over:
        return (
            f"Crossover: none — {hyp.baseline} is not shown equivalent to {hyp.treated} (within {margin}) in any "
            f"cell, nor significantly ahead of it."
        )
    sentences = []
    if catch:
        sentences.append(
            f"{hyp.baseline} is first equivalent to {hyp.treated} (within {margin}, TOST) at {_points(catch)}."
        )
    else:
        sentences.append(f"{hyp.baseline} is shown equivalent to {hyp.treated} (within {margin}) in no cell.")
    if over:
        sentences.append(
            f"{hyp.baseline} overtakes {hyp.treated} (significant in the other direction) first at {_points(over)}."
        )
    elif hyp.direction != "two-sided":
        sentences.append(f"{hyp.baseline} is significantly ahead in no cell.")
    return "Crossover: " + " ".join(sentences)
