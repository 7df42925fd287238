"""Calibration of the report's statistics on simulated studies whose structure the tests do not assume.

    python bench/calibration.py                 # 2,000 sweeps per scenario, 5 and 8 paired seeds (~1 min)
    python bench/calibration.py --sweeps 10000  # tighter Monte Carlo error

Prints, per scenario and seed count, the share of sweeps with a false cell claim (either direction: "supported" or
"reversed" where the cell's true advantage says otherwise), with a false trend claim (shrinks/grows where the true
slope is 0), the power on cells with a true advantage of at least 1 point, the coverage of the 95 % t intervals of Δ
and of the simultaneous intervals, each ± its Monte Carlo standard error. The scenarios are
``tlsweep.stats.calibration.SCENARIOS`` (seed effects per cell, cell-level deviations, ceilings, unequal variances,
missing runs, divergence); the decisions are made by the functions the report uses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tlsweep.stats.calibration import SCENARIOS, calibrate


def _fmt(pair: tuple[float, float]) -> str:
    rate, se = pair
    return "–" if rate != rate else f"{rate:.3f} ± {se:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 8])
    parser.add_argument("--rng", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.rng)
    started = time.perf_counter()
    print(f"{args.sweeps} simulated sweeps per row; alpha 0.05, Holm over cells × comparisons × both directions\n")
    header = (
        "scenario",
        "seeds",
        "false cell claim",
        "false trend claim",
        "power (Δ ≥ 1 pt)",
        "95% CI coverage",
        "simultaneous coverage",
        "trend power",
        "flagged by sensitivity",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for scenario in SCENARIOS:
        for seeds in args.seeds:
            result = calibrate(scenario, sweeps=args.sweeps, seeds=seeds, rng=rng)
            cells = (
                scenario.name,
                str(seeds),
                _fmt(result.false_cell_claim),
                _fmt(result.false_trend_claim),
                _fmt(result.power),
                _fmt(result.coverage),
                _fmt(result.simultaneous_coverage),
                _fmt(result.trend_power),
                _fmt(result.sensitivity_flagged),
            )
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
