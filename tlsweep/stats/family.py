"""Decisions over a family of cell contrasts: one multiplicity family for both directions, and the verdict labels.

Every cell (× comparison) brings two one-sided t-tests, treated > baseline and treated < baseline, and the 2m tests
form ONE family corrected at alpha (Holm by default; ``none`` corrects each cell's two directions only). So a false
"supported" and a false "reversed" claim together happen in at most alpha of sweeps, whichever direction the
hypothesis names. Equivalence (TOST within the margin) is its own family at alpha.

A cell is *equivalent* (caught up) when its corrected TOST p-value is ≤ alpha — checked first, since a difference
inside the declared margin is not one that matters — *supported* when the test in the hypothesis' direction is
significant after correction (two-sided hypotheses: either direction), *not supported* (reversed) when the opposite
direction is, and *inconclusive* otherwise, including every cell whose tests could not run. Cells that cannot be
tested stay in the family with p = 1, so the family keeps its declared size.

The exact test (sign-flip, or Mann–Whitney when unpaired) is corrected the same way as a robustness check. It
never gates a decision: a decided cell where it disagrees — often because its floor 1/2ⁿ cannot reach the
threshold with n pairs — gets a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tlsweep.stats._checks import StatsInputError, check_alternative
from tlsweep.stats.contrast import Contrast
from tlsweep.stats.multiplicity import CORRECTIONS, adjust_pvalues
from tlsweep.stats.power import detectable_effect, min_replicates

Label = Literal["supported", "not supported", "equivalent", "inconclusive"]


def smallest_threshold(alpha: float, correction: str, family_size: int) -> float:
    """The one-sided p-value the family's most significant test must reach: alpha/(2m) for Holm, Bonferroni and BH
    over m cells (2m one-sided tests), alpha/2 without correction (each cell's two directions)."""
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must lie in (0, 1), but got {alpha}")
    if correction not in CORRECTIONS:
        raise StatsInputError(f"correction must be one of {CORRECTIONS}, but got {correction!r}")
    return alpha / 2 if correction == "none" else alpha / (2 * max(family_size, 1))


def simultaneous_confidence(alpha: float, correction: str, family_size: int) -> float:
    """The confidence of the two-sided intervals that agree with the family's tests: 1 − alpha/m (Bonferroni over the
    m cells; a cell whose interval excludes 0 is significant under Holm too), 1 − alpha without correction."""
    return 1 - 2 * smallest_threshold(alpha, correction, family_size)


@dataclass(frozen=True)
class FamilyDecisions:
    """Adjusted p-values and labels of a family (arrays, the cells on the last axis)."""

    label: np.ndarray  # str per cell
    greater_adjusted: np.ndarray  # treated > baseline, adjusted within the 2m one-sided tests
    less_adjusted: np.ndarray
    tost_adjusted: np.ndarray


def _adjust_both_directions(p_greater: np.ndarray, p_less: np.ndarray, correction: str) -> np.ndarray:
    both = np.concatenate([p_greater, p_less], axis=-1)
    if correction == "none":  # each cell's own two directions: Holm over 2 = twice the smaller p
        pairs = np.stack([p_greater, p_less], axis=-1)
        return np.concatenate(np.moveaxis(adjust_pvalues(pairs, "holm"), -1, 0), axis=-1)
    return adjust_pvalues(both, correction)


def decide_arrays(
    p_greater: object, p_less: object, p_tost: object, *, alpha: float, correction: str, alternative: object
) -> FamilyDecisions:
    """Label every cell of a family from its one-sided p-values (NaN: the test could not run); ``alternative`` is one
    direction for all cells or one per cell (a family may mix comparisons). Vectorised over leading axes, so the
    calibration bench decides thousands of simulated sweeps through this same code."""
    g = np.asarray(p_greater, dtype=float)
    less = np.asarray(p_less, dtype=float)
    tost = np.asarray(p_tost, dtype=float)
    if g.shape != less.shape or g.shape != tost.shape or g.ndim == 0:
        raise StatsInputError(f"p-value arrays must share one shape with the family last: {g.shape}, {less.shape}")
    m = g.shape[-1]
    adjusted = _adjust_both_directions(
        np.where(np.isfinite(g), g, 1.0), np.where(np.isfinite(less), less, 1.0), correction
    )
    greater_adj, less_adj = adjusted[..., :m], adjusted[..., m:]
    tost_adj = adjust_pvalues(np.where(np.isfinite(tost), tost, 1.0), correction)
    sig_g, sig_l = greater_adj <= alpha, less_adj <= alpha
    sides = np.broadcast_to(np.asarray(alternative, dtype=object), (m,))
    for side in set(sides.tolist()):
        check_alternative(side)
    is_greater, is_less = sides == "greater", sides == "less"
    supported = np.where(is_greater, sig_g, np.where(is_less, sig_l, sig_g | sig_l))
    reversed_ = np.where(is_greater, sig_l, np.where(is_less, sig_g, False))
    label = np.where(
        tost_adj <= alpha,
        "equivalent",
        np.where(supported, "supported", np.where(reversed_, "not supported", "inconclusive")),
    ).astype(object)
    return FamilyDecisions(label, greater_adj, less_adj, tost_adj)


@dataclass(frozen=True)
class Decision:
    label: Label
    significant: bool  # significant after correction in the hypothesis' direction (two-sided: either)
    equivalent: bool  # corrected TOST p ≤ alpha
    p_adjusted: float  # the hypothesis' direction (two-sided: the smaller of the two directions)
    tost_adjusted: float
    opposite_adjusted: float  # the opposite direction (NaN for two-sided hypotheses)
    reason: str  # why the label
    robust_adjusted: float = float("nan")  # the exact test in the hypothesis' direction, corrected the same way
    robust_note: str = ""  # where the exact test disagrees with the deciding t-test, and why


def _side(greater: float, less: float, alternative: str) -> tuple[float, float]:
    """(hypothesis direction, opposite direction) of a pair of one-sided values."""
    if alternative == "greater":
        return greater, less
    if alternative == "less":
        return less, greater
    return min(greater, less), float("nan")


def decide_family(contrasts: list[Contrast], *, alpha: float, correction: str) -> list[Decision]:
    """Correct the family's p-values (both directions in one family) and label every cell (module docstring)."""
    if not contrasts:
        return []
    usable = np.array([c.computable for c in contrasts])
    sides = np.array([c.alternative for c in contrasts], dtype=object)

    def column(values: list[float]) -> np.ndarray:
        array = np.array(values, dtype=float)
        return np.where(usable & np.isfinite(array), array, 1.0)

    decided = decide_arrays(
        column([c.p_greater for c in contrasts]),
        column([c.p_less for c in contrasts]),
        column([float(c.tost.pvalue) for c in contrasts]),
        alpha=alpha,
        correction=correction,
        alternative=sides,
    )
    robust = decide_arrays(
        column([c.robust_greater for c in contrasts]),
        column([c.robust_less for c in contrasts]),
        np.ones(len(contrasts)),
        alpha=alpha,
        correction=correction,
        alternative=sides,
    )
    decisions = []
    for i, contrast in enumerate(contrasts):
        label: Label = str(decided.label[i])  # type: ignore[assignment]
        side = contrast.alternative
        p_adj, opposite_adj = _side(float(decided.greater_adjusted[i]), float(decided.less_adjusted[i]), side)
        robust_adj, _ = _side(float(robust.greater_adjusted[i]), float(robust.less_adjusted[i]), side)
        if not contrast.computable:
            label, reason = "inconclusive", contrast.design.removeprefix("not computed: ")
        elif not np.isfinite(float(contrast.test.pvalue)):
            label, reason = "inconclusive", "the test statistic is undefined (no variation between seeds)"
        else:
            reason = {
                "equivalent": "TOST significant",
                "supported": "significant after correction",
                "not supported": "significant in the opposite direction",
                "inconclusive": "neither a significant difference nor equivalence",
            }[label]
        robust_note = ""
        if contrast.computable and label in ("supported", "not supported"):
            robust_label = str(robust.label[i])
            if robust_label != label:
                floor = (
                    f"its floor {contrast.exact_floor:.3g} with {contrast.n_pairs} pairs is above the family's "
                    f"smallest threshold {contrast.smallest_threshold:.3g}: it needs {contrast.needed_replicates}"
                    if not contrast.robust_reachable
                    else f"its corrected p is {robust_adj:.3g}"
                )
                robust_note = f"the {contrast.robustness.name} test does not confirm this ({floor}); the t-test decides"
        decisions.append(
            Decision(
                label=label,
                significant=bool(contrast.computable and p_adj <= alpha),
                equivalent=bool(contrast.computable and decided.tost_adjusted[i] <= alpha),
                p_adjusted=p_adj if contrast.computable else float("nan"),
                tost_adjusted=float(decided.tost_adjusted[i]) if contrast.computable else float("nan"),
                opposite_adjusted=opposite_adj if contrast.computable else float("nan"),
                reason=reason,
                robust_adjusted=robust_adj if contrast.computable else float("nan"),
                robust_note=robust_note,
            )
        )
    return decisions


@dataclass(frozen=True)
class FamilyFacts:
    """What a family's design can decide, before any run: its size, its threshold and the seeds it needs."""

    tests: int  # cells × comparisons (each tested in both directions)
    threshold: float  # the smallest one-sided threshold (alpha / 2m under Holm)
    seeds: int  # paired seeds per cell
    robust_needs: int  # paired seeds the exact sign-flip test needs to reach the threshold at all
    detectable_dz: float  # the d_z the paired t-test detects with ``power`` at the threshold with ``seeds``
    power: float

    @property
    def robust_reachable(self) -> bool:
        return self.seeds >= self.robust_needs


def family_facts(*, tests: int, alpha: float, correction: str, seeds: int, power: float = 0.8) -> FamilyFacts:
    """The family's size, smallest threshold, the seeds its robustness test needs and the effect the t-test detects."""
    threshold = smallest_threshold(alpha, correction, tests)
    needs = min_replicates(threshold, paired=True, alternative="greater")
    detectable = detectable_effect(seeds, alpha=threshold, power=power)
    return FamilyFacts(tests, threshold, seeds, needs, detectable, power)
