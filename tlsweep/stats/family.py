"""Decisions over a family of cell contrasts: multiplicity correction, the minimum-seed gate, verdict labels.

A cell is *supported* when its corrected p-value is ≤ alpha, *equivalent* (caught up) when its corrected TOST
p-value is ≤ alpha — checked first, since a difference inside the declared margin is not one that matters —
*not supported* when the test in the opposite direction is significant after correction, and *inconclusive*
otherwise, including every cell whose tests could not run or whose replicates cannot reach the threshold.
Cells that cannot be tested stay in the family with p = 1, so the family keeps its declared size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tlsweep.stats._checks import StatsInputError
from tlsweep.stats.contrast import Contrast
from tlsweep.stats.multiplicity import CORRECTIONS, adjust_pvalues

Label = Literal["supported", "not supported", "equivalent", "inconclusive"]


def gate_alpha(alpha: float, correction: str, family_size: int) -> float:
    """The p-value a lone effect must reach: alpha/m for Holm, Bonferroni and BH, alpha without correction."""
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must lie in (0, 1), but got {alpha}")
    if correction not in CORRECTIONS:
        raise StatsInputError(f"correction must be one of {CORRECTIONS}, but got {correction!r}")
    return alpha if correction == "none" else alpha / max(family_size, 1)


@dataclass(frozen=True)
class Decision:
    label: Label
    significant: bool  # corrected p ≤ alpha in the hypothesis' direction
    equivalent: bool  # corrected TOST p ≤ alpha
    p_adjusted: float
    tost_adjusted: float
    opposite_adjusted: float
    reason: str  # why the label (e.g. "insufficient replicates (need 8)")


def decide_family(contrasts: list[Contrast], *, alpha: float, correction: str) -> list[Decision]:
    """Correct the family's p-values and label every cell (see the module docstring for the rules)."""
    if not contrasts:
        return []
    usable = np.array([c.computable and c.sufficient for c in contrasts])

    def family_p(values: list[float]) -> np.ndarray:
        p = np.array(values, dtype=float)
        return adjust_pvalues(np.where(usable & np.isfinite(p), p, 1.0), correction)

    p_adj = family_p([float(c.test.pvalue) for c in contrasts])
    tost_adj = family_p([float(c.tost.pvalue) for c in contrasts])
    opposite_adj = family_p([float(c.opposite.pvalue) for c in contrasts])
    decisions = []
    for i, contrast in enumerate(contrasts):
        significant = bool(usable[i] and p_adj[i] <= alpha)
        equivalent = bool(usable[i] and tost_adj[i] <= alpha)
        label: Label
        if not contrast.computable:
            label, reason = "inconclusive", contrast.design.removeprefix("not computed: ")
        elif not contrast.sufficient:
            label, reason = "inconclusive", f"insufficient replicates (need {contrast.needed_replicates})"
        elif not np.isfinite(float(contrast.test.pvalue)):
            label, reason = "inconclusive", "the test statistic is undefined (no variation between seeds)"
        elif equivalent:
            label, reason = "equivalent", "TOST significant"
        elif significant:
            label, reason = "supported", "significant after correction"
        elif usable[i] and opposite_adj[i] <= alpha:
            label, reason = "not supported", "significant in the opposite direction"
        else:
            label, reason = "inconclusive", "neither a significant difference nor equivalence"
        decisions.append(
            Decision(
                label=label,
                significant=significant,
                equivalent=equivalent,
                p_adjusted=float(p_adj[i]) if usable[i] else float("nan"),
                tost_adjusted=float(tost_adj[i]) if usable[i] else float("nan"),
                opposite_adjusted=float(opposite_adj[i]) if usable[i] else float("nan"),
                reason=reason,
            )
        )
    return decisions
