"""One cell's contrast treated − baseline: effect sizes, tests, equivalence and the minimum-seed rule.

Runs are paired by seed. When every run has its partner the paired analysis is used (paired t, exact sign-flip,
paired TOST, d_z); when some partner is missing the cell falls back to the unpaired analysis of all its runs
(Welch t, Mann–Whitney U, Welch TOST) and says so in ``design``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tlsweep.stats._checks import StatsInputError, as_sample, check_alternative
from tlsweep.stats.effects import (
    Interval,
    cohens_dz,
    hedges_g,
    mean_difference,
    probability_of_improvement,
    ratio_of_means,
)
from tlsweep.stats.power import exact_test_floor, min_replicates, seeds_for_power
from tlsweep.stats.significance import (
    TestResult,
    mann_whitney_test,
    paired_t_test,
    sign_flip_test,
    tost_paired,
    tost_unpaired,
    welch_t_test,
)

_NAN = float("nan")
_NO_INTERVAL = Interval(_NAN, _NAN, _NAN, "not computed")
_NO_TEST = TestResult("not computed", _NAN, _NAN)


@dataclass(frozen=True)
class Contrast:
    """Everything the report says about one cell's treated − baseline contrast (NaN where not computable)."""

    design: str  # "paired" | "unpaired (...)" | "not computed: ..."
    paired: bool
    n_treated: int
    n_baseline: int
    n_pairs: int
    mean_treated: float
    mean_baseline: float
    difference: Interval
    ratio: Interval
    d_z: float
    hedges_g: float
    p_improvement: Interval
    test: TestResult  # primary: paired t or Welch t, in the hypothesis' direction
    robustness: TestResult  # exact sign-flip or Mann–Whitney, same direction
    opposite: TestResult  # primary test in the opposite direction (NaN for two-sided hypotheses)
    tost: TestResult
    exact_floor: float  # the smallest p-value the exact test can reach with these replicates
    gate_alpha: float  # the threshold the exact test must be able to reach
    needed_replicates: int  # seeds (pairs, or per arm) needed for the exact test to reach gate_alpha
    seeds_for_power: int | None  # seeds a t-test needs for 80% power at the observed effect
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def computable(self) -> bool:
        return not self.design.startswith("not computed")

    @property
    def sufficient(self) -> bool:
        return self.computable and self.exact_floor <= self.gate_alpha


def _opposite(alternative: str) -> str | None:
    return {"greater": "less", "less": "greater"}.get(alternative)


def compare_arms(
    treated: object,
    baseline: object,
    *,
    treated_seeds: object,
    baseline_seeds: object,
    alternative: str,
    margin: float,
    gate_alpha: float,
    rng: np.random.Generator,
    n_resamples: int = 9999,
    power: float = 0.8,
) -> Contrast:
    """Contrast the runs of two arms of one cell, pairing them by seed.

    Args:
      treated, baseline: metric values per run (finite; failed runs already dropped).
      treated_seeds, baseline_seeds: the replicate seed of each run (same length as its values; unique).
      alternative: "greater" (H1: treated > baseline), "less" or "two-sided".
      margin: equivalence margin in the metric's units (TOST of |Δ| < margin).
      gate_alpha: the threshold one test must be able to reach (alpha, or alpha/m under Holm/Bonferroni);
        too few replicates for the exact test to reach it mark the contrast insufficient.
      rng: drives every bootstrap and Monte-Carlo permutation.
      n_resamples: bootstrap resamples per interval (0 skips the intervals).
    """
    alternative = check_alternative(alternative)
    a = as_sample(treated, "treated", min_size=0)
    b = as_sample(baseline, "baseline", min_size=0)
    sa = np.asarray(treated_seeds)
    sb = np.asarray(baseline_seeds)
    if sa.shape != a.shape or sb.shape != b.shape:
        raise StatsInputError(
            f"each value needs one seed: treated {a.shape} vs seeds {sa.shape}, baseline {b.shape} vs {sb.shape}"
        )
    for name, seeds in (("treated", sa), ("baseline", sb)):
        if len(set(seeds.tolist())) != seeds.size:
            raise StatsInputError(f"{name} seeds must be unique within an arm, but got {sorted(seeds.tolist())}")
    common = sorted(set(sa.tolist()) & set(sb.tolist()))
    unmatched = a.size + b.size - 2 * len(common)
    notes: list[str] = []
    mean_a = float(np.mean(a)) if a.size else _NAN
    mean_b = float(np.mean(b)) if b.size else _NAN
    if a.size == 0 or b.size == 0:
        missing = "treated" if a.size == 0 else "baseline"
        return _empty(f"not computed: the {missing} arm has no usable runs", a.size, b.size, mean_a, mean_b)
    paired = unmatched == 0 and len(common) >= 2
    if paired:
        order_a = np.argsort(sa)
        order_b = np.argsort(sb)
        a, b = a[order_a], b[order_b]
        design = "paired"
    elif a.size >= 2 and b.size >= 2:
        design = f"unpaired ({unmatched} run(s) lack a partner seed): Welch t + Mann–Whitney"
    else:
        return _empty(
            f"not computed: need at least 2 runs per arm, got {a.size} treated and {b.size} baseline",
            a.size,
            b.size,
            mean_a,
            mean_b,
        )

    floor = exact_test_floor(a.size, b.size, paired=paired, alternative=alternative)
    needed = min_replicates(gate_alpha, paired=paired, alternative=alternative)
    opposite = _opposite(alternative)
    difference = mean_difference(a, b, paired=paired, rng=rng, n_resamples=n_resamples)
    ratio = ratio_of_means(a, b, paired=paired, rng=rng, n_resamples=n_resamples)
    better, worse = (b, a) if alternative == "less" else (a, b)
    p_improvement = probability_of_improvement(better, worse, paired=paired, rng=rng, n_resamples=n_resamples)
    if paired:
        d = a - b
        d_z = cohens_dz(a, b)
        test = paired_t_test(a, b, alternative=alternative)
        robustness = sign_flip_test(d, alternative=alternative, rng=rng)
        opposite_test = paired_t_test(a, b, alternative=opposite) if opposite else _NO_TEST
        tost = tost_paired(a, b, margin=margin)
        if np.ptp(d) == 0:
            notes.append("the paired differences are identical for every seed, so the t-tests are undefined")
        effect_for_power = d_z
    else:
        d_z = _NAN
        test = welch_t_test(a, b, alternative=alternative)
        robustness = mann_whitney_test(a, b, alternative=alternative)
        opposite_test = welch_t_test(a, b, alternative=opposite) if opposite else _NO_TEST
        tost = tost_unpaired(a, b, margin=margin)
        effect_for_power = hedges_g(a, b)
    g = hedges_g(a, b)
    seeds_power = _seeds_for_observed(effect_for_power, alternative, gate_alpha, paired, power)
    if floor > gate_alpha:
        have = f"{a.size} pairs" if paired else f"{a.size} + {b.size} runs"
        notes.append(
            f"insufficient replicates (need {needed}): with {have} the exact test cannot reach p ≤ "
            f"{gate_alpha:.3g} (its floor is {floor:.3g})"
        )
    return Contrast(
        design=design,
        paired=paired,
        n_treated=int(a.size),
        n_baseline=int(b.size),
        n_pairs=len(common),
        mean_treated=mean_a,
        mean_baseline=mean_b,
        difference=difference,
        ratio=ratio,
        d_z=d_z,
        hedges_g=g,
        p_improvement=p_improvement,
        test=test,
        robustness=robustness,
        opposite=opposite_test,
        tost=tost,
        exact_floor=floor,
        gate_alpha=gate_alpha,
        needed_replicates=needed,
        seeds_for_power=seeds_power,
        notes=tuple(notes),
    )


def _seeds_for_observed(effect: float, alternative: str, alpha: float, paired: bool, power: float) -> int | None:
    if not np.isfinite(effect) or effect == 0:
        return None
    direction = "two-sided" if alternative == "two-sided" else "greater"
    if (alternative == "greater" and effect < 0) or (alternative == "less" and effect > 0):
        return None  # the observed effect points away from the hypothesis: no n detects it in that direction
    return seeds_for_power(effect, alpha=alpha, power=power, paired=paired, alternative=direction)


def _empty(design: str, n_a: int, n_b: int, mean_a: float, mean_b: float) -> Contrast:
    return Contrast(
        design=design,
        paired=False,
        n_treated=n_a,
        n_baseline=n_b,
        n_pairs=0,
        mean_treated=mean_a,
        mean_baseline=mean_b,
        difference=_NO_INTERVAL,
        ratio=_NO_INTERVAL,
        d_z=_NAN,
        hedges_g=_NAN,
        p_improvement=_NO_INTERVAL,
        test=_NO_TEST,
        robustness=_NO_TEST,
        opposite=_NO_TEST,
        tost=_NO_TEST,
        exact_floor=1.0,
        gate_alpha=0.0,
        needed_replicates=0,
        seeds_for_power=None,
        notes=(design.removeprefix("not computed: "),),
    )
