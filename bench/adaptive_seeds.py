"""Adaptive confirm seeds against fixed designs of equal power, by simulation (no training).

    python bench/adaptive_seeds.py

For a few made-up studies of 6 cells (effects in SD of the paired differences, margin 0.5 SD) it prints the
group-sequential design's power and mean seeds per cell (4 seeds, then 2 more per look up to 16), the smallest
fixed number of seeds with at least that power, and the share of confirm trials saved.
"""

from __future__ import annotations

import numpy as np

from tlsweep.stats.sequential import SequentialDesign, seed_looks, simulate, simulate_fixed

STUDIES = {
    "large, moderate, caught up, reversed": [3.0, 2.0, 1.0, 0.0, 0.0, -1.0],
    "graded advantage": [3.0, 2.0, 1.2, 0.8, 0.5, 0.0],
    "every cell 1 SD": [1.0] * 6,
    "every cell 0.7 SD": [0.7] * 6,
    "no effect anywhere": [0.0] * 6,
}


def main() -> None:
    design = SequentialDesign(seed_looks(4, 2, 16), alpha=0.05, margin=0.5)
    for name, effects in STUDIES.items():
        adaptive = simulate(effects, design, sweeps=4000, rng=np.random.default_rng(11))
        if adaptive.power != adaptive.power:  # no true effect: compare with the fixed design at max_seeds
            fixed_n = design.looks[-1]
        else:
            fixed_n = next(
                n
                for n in range(3, 64)
                if simulate_fixed(effects, n, design, sweeps=4000, rng=np.random.default_rng(12)).power
                >= adaptive.power
            )
        print(
            f"{name:40s} power {adaptive.power:.3f}  mean seeds {adaptive.mean_seeds:5.2f}  fixed n {fixed_n:2d}  "
            f"saved {1 - adaptive.mean_seeds / fixed_n:6.1%}  false supported {adaptive.any_supported_false:.3f}"
        )


if __name__ == "__main__":
    main()
