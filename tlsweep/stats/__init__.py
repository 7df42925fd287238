"""Pure statistical functions of the report (numpy, scipy, statsmodels; explicit ``numpy.random.Generator``).

Convention: *treated* is the arm the hypothesis favours, *baseline* the other; every contrast is
treated − baseline; paired samples are aligned by seed; batched functions take the replicates on the last axis.
"""

from __future__ import annotations

from tlsweep.stats._checks import StatsInputError
from tlsweep.stats.contrast import Contrast, compare_arms
from tlsweep.stats.effects import (
    Interval,
    bootstrap_interval,
    cohens_dz,
    hedges_g,
    mean_difference,
    mean_interval,
    probability_of_improvement,
    ratio_of_means,
)
from tlsweep.stats.family import (
    Decision,
    FamilyDecisions,
    FamilyFacts,
    decide_arrays,
    decide_family,
    family_facts,
    simultaneous_confidence,
    smallest_threshold,
)
from tlsweep.stats.multiplicity import adjust_pvalues
from tlsweep.stats.power import (
    detectable_difference,
    detectable_effect,
    exact_test_floor,
    min_replicates,
    paired_t_power,
    seeds_for_power,
)
from tlsweep.stats.significance import (
    PairedT,
    TestResult,
    mann_whitney_test,
    paired_t,
    paired_t_test,
    sign_flip_pvalues,
    sign_flip_test,
    tost_paired,
    tost_unpaired,
    welch_t_test,
)
from tlsweep.stats.trend import TrendModel, TrendTest, fit_cell_trend, trend_tests
from tlsweep.stats.tuning import TuningCurve, expected_best_curve, tuning_curve, u_estimator_weights

__all__ = [
    "Contrast",
    "Decision",
    "FamilyDecisions",
    "FamilyFacts",
    "Interval",
    "PairedT",
    "StatsInputError",
    "TestResult",
    "TrendModel",
    "TrendTest",
    "TuningCurve",
    "adjust_pvalues",
    "bootstrap_interval",
    "cohens_dz",
    "compare_arms",
    "decide_arrays",
    "decide_family",
    "detectable_difference",
    "detectable_effect",
    "exact_test_floor",
    "expected_best_curve",
    "family_facts",
    "fit_cell_trend",
    "hedges_g",
    "mann_whitney_test",
    "mean_difference",
    "mean_interval",
    "min_replicates",
    "paired_t",
    "paired_t_power",
    "paired_t_test",
    "probability_of_improvement",
    "ratio_of_means",
    "seeds_for_power",
    "sign_flip_pvalues",
    "sign_flip_test",
    "simultaneous_confidence",
    "smallest_threshold",
    "tost_paired",
    "tost_unpaired",
    "trend_tests",
    "tuning_curve",
    "u_estimator_weights",
    "welch_t_test",
]
