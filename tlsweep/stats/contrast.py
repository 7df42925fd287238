"""One cell's contrast treated − baseline: effect sizes, tests in both directions, equivalence, intervals.

Runs are paired by seed. The paired analysis (paired t, exact sign-flip, paired TOST, d_z) uses the complete pairs;
a run whose partner seed is missing is dropped and counted in ``dropped``. Only when the two arms share no seed at
all (an unpaired design) is the cell analysed unpaired (Welch t, Mann–Whitney U, Welch TOST).

The t-test decides (``tlsweep.stats.family``); the exact test is the robustness column. Its floor (1/2ⁿ one-sided
for n pairs) is a property of the test, not of the data, so it never gates the decision: ``robust_reachable`` says
whether it can reach the family's smallest threshold at all.
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
    paired_t,
    sign_flip_pvalues,
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
    alternative: str  # the hypothesis' direction: greater | less | two-sided
    paired: bool
    n_treated: int  # runs analysed (complete pairs when paired)
    n_baseline: int
    n_pairs: int
    dropped: int  # runs left out because their partner seed has no usable run
    mean_treated: float
    mean_baseline: float
    difference: Interval  # t interval (95 %) of the test that decides
    simultaneous: Interval  # t interval at the family's simultaneous level (Bonferroni over the cells)
    ratio: Interval
    d_z: float
    hedges_g: float
    p_improvement: Interval
    test: TestResult  # t-test in the hypothesis' direction (two-sided p for two-sided hypotheses)
    robustness: TestResult  # exact sign-flip or Mann–Whitney, same direction
    opposite: TestResult  # t-test in the opposite direction (NaN for two-sided hypotheses)
    p_greater: float  # one-sided t p-values of both directions: the family tests these
    p_less: float
    robust_greater: float  # the robustness test's one-sided p-values
    robust_less: float
    tost: TestResult
    exact_floor: float  # the smallest one-sided p-value the exact test can reach with these replicates
    smallest_threshold: float  # the family's smallest one-sided threshold
    needed_replicates: int  # seeds (pairs, or per arm) the exact test needs to reach ``smallest_threshold``
    seeds_for_power: int | None  # seeds a t-test needs for 80% power at the observed effect
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def computable(self) -> bool:
        return not self.design.startswith("not computed")

    @property
    def robust_reachable(self) -> bool:
        """Whether the exact test can reach the family's smallest threshold at all with these replicates."""
        return self.computable and self.exact_floor <= self.smallest_threshold


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
    smallest_threshold: float,
    rng: np.random.Generator,
    n_resamples: int = 9999,
    simultaneous_confidence: float | None = None,
    power: float = 0.8,
) -> Contrast:
    """Contrast the runs of two arms of one cell, pairing them by seed.

    Args:
      treated, baseline: metric values per run (finite; failed runs already dropped).
      treated_seeds, baseline_seeds: the replicate seed of each run (same length as its values; unique).
      alternative: "greater" (H1: treated > baseline), "less" or "two-sided".
      margin: equivalence margin in the metric's units (TOST of |Δ| < margin).
      smallest_threshold: the one-sided p the family's most significant test must reach (``smallest_threshold``
        of ``tlsweep.stats.family``): the power calculation aims at it and the robustness note compares the exact
        test's floor with it. It does not gate the decision.
      rng: drives the Monte-Carlo sign flips (beyond 16 pairs) and the bootstrap of P(improve) (from 20 seeds on).
      n_resamples: bootstrap resamples of P(improve) (0 skips that interval).
      simultaneous_confidence: the confidence of the family's simultaneous interval (default: the 95 % interval).
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
    dropped = a.size + b.size - 2 * len(common)
    notes: list[str] = []
    if a.size == 0 or b.size == 0:
        missing = "treated" if a.size == 0 else "baseline"
        return _empty(
            f"not computed: the {missing} arm has no usable runs", alternative, a, b, dropped, smallest_threshold
        )
    if common:
        paired = True
        if len(common) < 2:
            return _empty(
                f"not computed: only {len(common)} complete pair (a paired test needs 2)",
                alternative,
                a,
                b,
                dropped,
                smallest_threshold,
            )
        keep_a, keep_b = np.isin(sa, common), np.isin(sb, common)
        a = a[keep_a][np.argsort(sa[keep_a])]
        b = b[keep_b][np.argsort(sb[keep_b])]
        design = "paired"
        if dropped:
            lone = sorted(set(sa.tolist()) ^ set(sb.tolist()))
            notes.append(f"{dropped} run(s) without a partner seed left out (seed(s) {lone}); {len(common)} pairs")
    elif a.size >= 2 and b.size >= 2:
        paired = False
        dropped = 0
        design = "unpaired (the arms share no seed): Welch t + Mann–Whitney"
    else:
        return _empty(
            f"not computed: need at least 2 runs per arm, got {a.size} treated and {b.size} baseline",
            alternative,
            a,
            b,
            0,
            smallest_threshold,
        )

    floor = exact_test_floor(a.size, b.size, paired=paired, alternative="greater")
    needed = min_replicates(smallest_threshold, paired=paired, alternative="greater")
    opposite = _opposite(alternative)
    difference = mean_difference(a, b, paired=paired)
    simultaneous = (
        mean_difference(a, b, paired=paired, confidence=simultaneous_confidence)
        if simultaneous_confidence is not None
        else difference
    )
    ratio = ratio_of_means(a, b, paired=paired)
    better, worse = (b, a) if alternative == "less" else (a, b)
    p_improvement = probability_of_improvement(better, worse, paired=paired, rng=rng, n_resamples=n_resamples)
    if paired:
        d = a - b
        d_z = cohens_dz(a, b)
        moments = paired_t(d)  # the function the calibration bench runs on simulated sweeps
        greater, less = (
            TestResult("paired t", moments.t, moments.pvalue(side), float(moments.n) - 1)
            for side in ("greater", "less")
        )
        flips = sign_flip_pvalues(d, rng=rng)
        robust_greater, robust_less = flips["greater"], flips["less"]
        test = TestResult("paired t", moments.t, moments.pvalue(alternative), float(moments.n) - 1)
        robustness = flips[alternative]
        tost = tost_paired(a, b, margin=margin)
        if np.ptp(d) == 0:
            notes.append("the paired differences are identical for every seed, so the t-tests are undefined")
        effect_for_power = d_z
    else:
        d_z = _NAN
        greater, less = (welch_t_test(a, b, alternative=side) for side in ("greater", "less"))
        robust_greater, robust_less = (mann_whitney_test(a, b, alternative=side) for side in ("greater", "less"))
        test = welch_t_test(a, b, alternative=alternative)
        robustness = mann_whitney_test(a, b, alternative=alternative)
        tost = tost_unpaired(a, b, margin=margin)
        effect_for_power = hedges_g(a, b)
    opposite_test = {"greater": greater, "less": less}[opposite] if opposite else _NO_TEST
    return Contrast(
        design=design,
        alternative=alternative,
        paired=paired,
        n_treated=int(a.size),
        n_baseline=int(b.size),
        n_pairs=len(common),
        dropped=int(dropped),
        mean_treated=float(np.mean(a)),
        mean_baseline=float(np.mean(b)),
        difference=difference,
        simultaneous=simultaneous,
        ratio=ratio,
        d_z=d_z,
        hedges_g=hedges_g(a, b),
        p_improvement=p_improvement,
        test=test,
        robustness=robustness,
        opposite=opposite_test,
        p_greater=float(greater.pvalue),
        p_less=float(less.pvalue),
        robust_greater=float(robust_greater.pvalue),
        robust_less=float(robust_less.pvalue),
        tost=tost,
        exact_floor=floor,
        smallest_threshold=smallest_threshold,
        needed_replicates=needed,
        seeds_for_power=_seeds_for_observed(effect_for_power, alternative, smallest_threshold, paired, power),
        notes=tuple(notes),
    )


def _seeds_for_observed(effect: float, alternative: str, threshold: float, paired: bool, power: float) -> int | None:
    """Seeds for ``power`` at the observed effect, a one-sided test at ``threshold`` in the hypothesis' direction
    (two-sided hypotheses: in the direction observed)."""
    if not np.isfinite(effect) or effect == 0:
        return None
    if (alternative == "greater" and effect < 0) or (alternative == "less" and effect > 0):
        return None  # the observed effect points away from the hypothesis: no n detects it in that direction
    return seeds_for_power(effect, alpha=threshold, power=power, paired=paired, alternative="greater")


def _empty(design: str, alternative: str, a: np.ndarray, b: np.ndarray, dropped: int, threshold: float) -> Contrast:
    return Contrast(
        design=design,
        alternative=alternative,
        paired=False,
        n_treated=int(a.size),
        n_baseline=int(b.size),
        n_pairs=0,
        dropped=int(dropped),
        mean_treated=float(np.mean(a)) if a.size else _NAN,
        mean_baseline=float(np.mean(b)) if b.size else _NAN,
        difference=_NO_INTERVAL,
        simultaneous=_NO_INTERVAL,
        ratio=_NO_INTERVAL,
        d_z=_NAN,
        hedges_g=_NAN,
        p_improvement=_NO_INTERVAL,
        test=_NO_TEST,
        robustness=_NO_TEST,
        opposite=_NO_TEST,
        p_greater=_NAN,
        p_less=_NAN,
        robust_greater=_NAN,
        robust_less=_NAN,
        tost=_NO_TEST,
        exact_floor=1.0,
        smallest_threshold=threshold,
        needed_replicates=0,
        seeds_for_power=None,
        notes=(design.removeprefix("not computed: "),),
    )
