"""Group-sequential confirm seeds: alpha-spending boundaries, per-look tests and decisions over a family of cells.

The confirm phase of an adaptive sweep runs its paired seeds in batches ("looks"). After look k every still-open
cell is tested on its first n_k paired differences; a cell whose decision is settled gets no more seeds.

- **Boundaries.** Lan–DeMets alpha spending over the information fractions t_k = n_k / n_K (O'Brien–Fleming-type
  α(t) = 2 − 2Φ(z_{1−α/2} / √t), or Pocock-type α·ln(1 + (e − 1)t)). The one-sided critical values c_k solve
  P(Z_1 < c_1, …, Z_{k−1} < c_{k−1}, Z_k ≥ c_k) = α(t_k) − α(t_{k−1}) for the canonical joint distribution
  (Cov(Z_j, Z_k) = √(t_j / t_k)), computed by recursive numerical integration (Jennison & Turnbull 2000, ch. 19).
  Each look compares its one-sided p-value with the nominal level 1 − Φ(c_k).
- **Per-look test.** The paired t-test on the first n_k differences (a t p-value against the normal-theory nominal
  level; the simulation in tests/test_stats_sequential.py checks the resulting error rate).
- **Multiplicity.** Holm across cells with recycling (Maurer & Bretz 2013, "Multiple testing in group sequential
  trials using graphical approaches"): every unrejected cell is tested at α/m_open with the boundaries of that
  level, at each of its looks so far; a rejection frees its share and the others are tested again at the larger
  level. Bonferroni keeps α/m, ``none`` gives each cell's two directions α/2. Both directions form ONE family: each
  cell brings its two one-sided tests (treated above / below baseline), so a false "supported" and a false "reversed"
  claim together stay at most α, as in the fixed-n analysis. The equivalence family (TOST with the margin) is run the
  same way on its own, as the fixed-n
  analysis corrects each of its three p-values separately.
- **Decisions.** Equivalent first, then supported, then reversed (the order of ``decide_family``); a cell with any
  of them stops; the others go on to the next look; after the last look they are inconclusive. Stopping a cell for
  equivalence or a reversal only removes chances to reject it (non-binding), so the family-wise error rate of the
  primary family stays at most α.

Everything is vectorised over leading axes (simulated sweeps), so one code path serves the engine, the report and
the simulation that checks the error rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.stats

from tlsweep.stats._checks import StatsInputError, check_alternative

Spending = Literal["obrien_fleming", "pocock"]
SPENDINGS: tuple[str, ...] = ("obrien_fleming", "pocock")
SEQUENTIAL_CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "none")
SeqLabel = Literal["supported", "not supported", "equivalent", "inconclusive"]
_GRID = 1601  # points of the integration grid per look


def seed_looks(first: int, batch: int, max_seeds: int) -> tuple[int, ...]:
    """Seeds per cell at each look: ``first``, then ``batch`` more each time, the last look at ``max_seeds``."""
    if not 2 <= first <= max_seeds or batch < 1:
        raise StatsInputError(f"need 2 ≤ first ({first}) ≤ max_seeds ({max_seeds}) and batch ({batch}) ≥ 1")
    looks = [*list(range(first, max_seeds, batch)), max_seeds]
    return tuple(looks)


def spent_alpha(fraction: float, alpha: float, spending: str = "obrien_fleming") -> float:
    """Cumulative one-sided alpha spent at information fraction ``fraction`` (0 < t ≤ 1)."""
    if spending not in SPENDINGS:
        raise StatsInputError(f"spending must be one of {SPENDINGS}, but got {spending!r}")
    t = min(max(float(fraction), 0.0), 1.0)
    if t == 0:
        return 0.0
    if spending == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    return float(2 * scipy.stats.norm.sf(scipy.stats.norm.isf(alpha / 2) / math.sqrt(t)))


@lru_cache(maxsize=4096)
def _critical_values(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    targets = np.diff([0.0] + [spent_alpha(t, alpha, spending) for t in fractions])
    crit: list[float] = []
    # sub-density of the score S_k = Z_k·√t_k on the continuation region, carried from look to look
    grid: np.ndarray | None = None
    density = np.empty(0)
    previous_t = 0.0
    for k, t in enumerate(fractions):
        increment = t - previous_t
        if increment <= 0:
            raise StatsInputError(f"information fractions must increase, but got {fractions}")
        target = float(targets[k])

        def crossing(
            c: float, t: float = t, inc: float = increment, g: np.ndarray | None = grid, f: np.ndarray = density
        ) -> float:
            if g is None:  # the first look
                return float(scipy.stats.norm.sf(c))
            tail = scipy.stats.norm.sf((c * math.sqrt(t) - g) / math.sqrt(inc))
            return float(np.trapezoid(f * tail, g))

        c = (
            40.0
            if target <= 0
            else float(scipy.optimize.brentq(lambda c, a=target: crossing(c) - a, -10.0, 40.0, xtol=1e-10))
        )
        crit.append(c)
        upper = c * math.sqrt(t)
        new_grid = np.linspace(min(-10.0 * math.sqrt(t), upper - 1.0), upper, _GRID)
        if grid is None:
            new_density = scipy.stats.norm.pdf(new_grid / math.sqrt(t)) / math.sqrt(t)
        else:
            kernel = scipy.stats.norm.pdf((new_grid[:, None] - grid[None, :]) / math.sqrt(increment))
            new_density = np.trapezoid(kernel * density[None, :], grid, axis=1) / math.sqrt(increment)
        grid, density, previous_t = new_grid, new_density, t
    return tuple(crit)


def nominal_levels(fractions: tuple[float, ...], alpha: float, spending: str = "obrien_fleming") -> np.ndarray:
    """One-sided nominal p-value thresholds 1 − Φ(c_k) of each look for overall one-sided level ``alpha``."""
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must lie in (0, 1), but got {alpha}")
    if spending not in SPENDINGS:
        raise StatsInputError(f"spending must be one of {SPENDINGS}, but got {spending!r}")
    key = tuple(round(float(t), 12) for t in fractions)
    return np.asarray(scipy.stats.norm.sf(_critical_values(key, round(float(alpha), 15), spending)))


@dataclass(frozen=True)
class SequentialDesign:
    """The group-sequential plan of a confirm phase."""

    looks: tuple[int, ...]  # paired seeds per cell at each look, increasing; the last is the maximum
    alpha: float = 0.05
    spending: str = "obrien_fleming"
    correction: str = "holm"
    alternative: str = "greater"
    margin: float = 0.02  # equivalence margin, in the units of the differences
    futility: float = 0.1  # stop a cell when no decision has this conditional power (0: never stop for futility)
    futility_from: float = 0.5  # ... at looks with at least this information fraction (early estimates are noisy)

    def __post_init__(self) -> None:
        check_alternative(self.alternative)
        if self.correction not in SEQUENTIAL_CORRECTIONS:
            raise StatsInputError(
                f"a sequential design needs a correction of {SEQUENTIAL_CORRECTIONS}, but got {self.correction!r}"
            )
        if not self.looks or any(b <= a for a, b in zip(self.looks, self.looks[1:], strict=False)) or self.looks[0] < 2:
            raise StatsInputError(f"looks must be increasing seed counts ≥ 2, but got {self.looks}")
        if not self.margin > 0:
            raise StatsInputError(f"the equivalence margin must be > 0, but got {self.margin}")
        if not 0 <= self.futility < 1:
            raise StatsInputError(f"the futility threshold must lie in [0, 1), but got {self.futility}")

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.looks[-1] for n in self.looks)

    def levels(self, alpha: float, *, two_sided: bool = False) -> np.ndarray:
        """Nominal p thresholds per look at overall level ``alpha`` (two-sided: α/2 per side, on 2-sided p)."""
        if two_sided:
            return 2 * nominal_levels(self.fractions, alpha / 2, self.spending)
        return nominal_levels(self.fractions, alpha, self.spending)


@dataclass(frozen=True)
class LookPvalues:
    """One-sided p-values per cell and look (NaN where a look has fewer than two pairs or no variance)."""

    efficacy: np.ndarray  # [..., m, K] in the hypothesis' direction (two-sided p for two-sided hypotheses)
    opposite: np.ndarray  # [..., m, K] the other direction (NaN for two-sided hypotheses)
    tost: np.ndarray  # [..., m, K] the larger of the two one-sided TOST p-values
    n_pairs: np.ndarray  # [..., m, K] pairs used
    greater: np.ndarray  # [..., m, K] H1: treated > baseline (one-sided): the family tests both directions
    less: np.ndarray  # [..., m, K] H1: treated < baseline


def look_pvalues(differences: object, design: SequentialDesign) -> LookPvalues:
    """Paired t and TOST p-values of every look from differences ``[..., m, n_max]`` in replicate order.

    Look k uses the replicates 0..n_k − 1 (NaN = a missing pair, left out).
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim < 1 or d.shape[-1] < design.looks[-1]:
        d = (
            np.concatenate([d, np.full((*d.shape[:-1], design.looks[-1] - d.shape[-1]), np.nan)], axis=-1)
            if d.ndim >= 1
            else d
        )
    present = np.isfinite(d)
    values = np.where(present, d, 0.0)
    cum_n = np.cumsum(present, axis=-1)
    cum_s = np.cumsum(values, axis=-1)
    cum_q = np.cumsum(values * values, axis=-1)
    idx = np.asarray(design.looks) - 1
    n, s, q = cum_n[..., idx], cum_s[..., idx], cum_q[..., idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n
        var = (q - n * mean * mean) / (n - 1)
        se = np.sqrt(np.where(var > 1e-15 * np.maximum(q / np.maximum(n, 1), 1e-300), var, np.nan) / n)
        se = np.where(n >= 2, se, np.nan)
        df = np.maximum(n - 1, 1)
        t = mean / se
        greater = scipy.stats.t.sf(t, df)
        less = scipy.stats.t.cdf(t, df)
        tost = np.maximum(
            scipy.stats.t.sf((mean + design.margin) / se, df), scipy.stats.t.cdf((mean - design.margin) / se, df)
        )
    if design.alternative == "greater":
        eff, opp = greater, less
    elif design.alternative == "less":
        eff, opp = less, greater
    else:
        eff, opp = np.minimum(2 * np.minimum(greater, less), 1.0), np.full_like(greater, np.nan)
    return LookPvalues(eff, opp, tost, n, greater, less)


def sequential_reject(
    p: np.ndarray, available: np.ndarray, design: SequentialDesign, *, two_sided: bool = False
) -> np.ndarray:
    """Which cells a family rejects: p ``[..., m, K]``, ``available`` (bool, same shape) marks looks a cell had.

    Holm with recycling (see the module docstring): iterate α/m_open until no new rejection.
    """
    m = p.shape[-2]
    usable = available & np.isfinite(p)
    p_use = np.where(usable, p, np.inf)
    if design.correction == "none":
        shares = np.ones(m)
    else:
        shares = 1.0 / np.arange(1, m + 1)  # α/j for j open cells
    table = np.stack([design.levels(design.alpha * share, two_sided=two_sided) for share in shares])  # [m, K]
    rejected = np.zeros(p.shape[:-1], dtype=bool)
    for _ in range(m):
        if design.correction == "holm":
            n_open = m - rejected.sum(axis=-1)  # [...]
            bounds = table[np.clip(n_open, 1, m) - 1]  # [..., K]
        elif design.correction == "bonferroni":
            bounds = np.broadcast_to(table[m - 1], (*p.shape[:-2], p.shape[-1]))
        else:
            bounds = np.broadcast_to(table[0], (*p.shape[:-2], p.shape[-1]))
        hit = np.any(p_use <= bounds[..., None, :], axis=-1) & ~rejected
        if not hit.any():
            break
        rejected |= hit
        if design.correction != "holm":
            break
    return rejected


def conditional_power(p: np.ndarray, fraction: float, final_level: np.ndarray | float) -> np.ndarray:
    """P(the last look rejects | this look's one-sided p, the effect estimated so far): the current-trend rule.

    With z = Φ⁻¹(1 − p) at information fraction t and the final critical value c_K = Φ⁻¹(1 − final_level),
    CP = Φ((z / √t − c_K) / √(1 − t)). NaN p gives 0 (nothing to go on); t = 1 gives 0 (no look left).
    """
    if fraction >= 1:
        return np.zeros(np.shape(p))
    z = scipy.stats.norm.isf(np.where(np.isfinite(p), p, 1.0))
    c = scipy.stats.norm.isf(final_level)
    return np.asarray(scipy.stats.norm.cdf((z / math.sqrt(fraction) - c) / math.sqrt(1 - fraction)))


def _open_levels(design: SequentialDesign, rejected: np.ndarray) -> np.ndarray:
    """The last look's nominal level each test of a family is tested at now (Holm: α / tests not rejected)."""
    m = rejected.shape[-1]
    finals = np.array([design.levels(design.alpha / j)[-1] for j in range(1, m + 1)])
    if design.correction == "none":
        n_share = np.ones(rejected.shape[:-1], dtype=int)
    elif design.correction == "bonferroni":
        n_share = np.full(rejected.shape[:-1], m)
    else:
        n_share = np.maximum(m - rejected.sum(axis=-1), 1)
    level = finals[n_share - 1]
    return np.broadcast_to(level[..., None], rejected.shape)


def _directions_design(design: SequentialDesign) -> SequentialDesign:
    """The design the 2m one-sided tests of both directions run under (``none``: α/2 for each cell's two)."""
    return dataclasses.replace(design, alpha=design.alpha / 2) if design.correction == "none" else design


@dataclass(frozen=True)
class SequentialOutcome:
    """Decisions of a group-sequential confirm phase after ``looks_done`` looks (arrays over ``[..., m]``)."""

    label: np.ndarray  # str: supported | not supported | equivalent | inconclusive (open cells: inconclusive)
    futile: np.ndarray  # bool: stopped because no decision could still be reached (conditional power)
    open: np.ndarray  # bool: still gets seeds at the next look
    stop_look: np.ndarray  # int: 1-based look at which the cell stopped (its last look if open or never settled)
    seeds: np.ndarray  # int: seeds per arm the cell was planned to get (n at its stop look)
    looks_done: int


def sequential_decide(
    pvalues: LookPvalues, design: SequentialDesign, looks_done: int | None = None
) -> SequentialOutcome:
    """Run the looks 1..``looks_done`` (default: all): test, stop settled cells, carry the others on."""
    k_total = len(design.looks)
    looks_done = k_total if looks_done is None else looks_done
    if not 1 <= looks_done <= k_total:
        raise StatsInputError(f"looks_done must lie in 1..{k_total}, but got {looks_done}")
    shape = pvalues.efficacy.shape[:-1]
    m = shape[-1] if shape else 1
    both_design = _directions_design(design)
    both_p = np.concatenate([pvalues.greater, pvalues.less], axis=-2)  # [..., 2m, K]: one family, both directions
    open_ = np.ones(shape, dtype=bool)
    stop_look = np.full(shape, looks_done, dtype=int)
    available = np.zeros(pvalues.efficacy.shape, dtype=bool)
    eff = opp = equiv = np.zeros(shape, dtype=bool)
    futile = np.zeros(shape, dtype=bool)
    for k in range(looks_done):
        available[..., k] = open_
        rejected = sequential_reject(both_p, np.concatenate([available, available], axis=-2), both_design)
        above, below = rejected[..., :m], rejected[..., m:]
        if design.alternative == "greater":
            eff, opp = above, below
        elif design.alternative == "less":
            eff, opp = below, above
        else:
            eff, opp = above | below, np.zeros(shape, dtype=bool)
        equiv = sequential_reject(pvalues.tost, available, design)
        settled = (eff | opp | equiv) & open_
        if design.futility > 0 and k + 1 < k_total and design.fractions[k] >= design.futility_from - 1e-12:
            t = design.fractions[k]
            levels = _open_levels(both_design, rejected)
            power = np.maximum(
                conditional_power(pvalues.greater[..., k], t, levels[..., :m]),
                conditional_power(pvalues.less[..., k], t, levels[..., m:]),
            )
            power = np.maximum(power, conditional_power(pvalues.tost[..., k], t, _open_levels(design, equiv)))
            stop = open_ & ~settled & (power < design.futility)
            futile |= stop
            settled |= stop
        stop_look = np.where(settled, k + 1, stop_look)
        open_ = open_ & ~settled
    label = np.full(shape, "inconclusive", dtype=object)
    label[opp] = "not supported"
    label[eff] = "supported"
    label[equiv] = "equivalent"
    if looks_done == k_total:
        open_ = np.zeros(shape, dtype=bool)
    seeds = np.asarray(design.looks)[stop_look - 1]
    return SequentialOutcome(label, futile & (label == "inconclusive"), open_, stop_look, seeds, looks_done)


# ---- simulation: the error rate and the seeds saved ---------------------------------------------------------------
@dataclass(frozen=True)
class SimulationSummary:
    sweeps: int
    any_supported_false: float  # share of sweeps with a cell of true effect ≤ 0 declared supported (FWER)
    any_reversed_false: float  # share with a cell of true effect ≥ 0 declared reversed
    power: float  # mean over cells with a true effect > 0 of P(supported)
    mean_seeds: float  # mean confirm seeds per cell (per arm)
    max_seeds: int
    any_false_claim: float = float("nan")  # share with a false claim in either direction (the family's error)


def simulate(
    effects: object, design: SequentialDesign, *, sweeps: int, rng: np.random.Generator, sd: float = 1.0
) -> SimulationSummary:
    """Simulate ``sweeps`` sweeps of paired normal differences (mean ``effects[c]``, SD ``sd``) per cell, run the
    sequential design on each and summarise. Vectorised: 10⁴ sweeps of a few cells take about a second."""
    mu = np.asarray(effects, dtype=float)
    d = rng.normal(mu[None, :, None], sd, size=(sweeps, mu.size, design.looks[-1]))
    out = sequential_decide(look_pvalues(d, design), design)
    return _summary(out.label, mu, out.seeds.astype(float), sweeps, design.looks[-1])


def simulate_fixed(
    effects: object, n: int, design: SequentialDesign, *, sweeps: int, rng: np.random.Generator, sd: float = 1.0
) -> SimulationSummary:
    """The same sweeps with a fixed number ``n`` of seeds per cell and one analysis (a one-look design)."""
    fixed = SequentialDesign(
        (n,), design.alpha, design.spending, design.correction, design.alternative, design.margin, futility=0.0
    )
    mu = np.asarray(effects, dtype=float)
    d = rng.normal(mu[None, :, None], sd, size=(sweeps, mu.size, n))
    out = sequential_decide(look_pvalues(d, fixed), fixed)
    return _summary(out.label, mu, np.full(out.label.shape, float(n)), sweeps, n)


def _summary(label: np.ndarray, mu: np.ndarray, seeds: np.ndarray, sweeps: int, max_seeds: int) -> SimulationSummary:
    supported, reversed_ = label == "supported", label == "not supported"
    false_sup = np.any(supported & (mu <= 0)[None, :], axis=-1).mean()
    false_rev = np.any(reversed_ & (mu >= 0)[None, :], axis=-1).mean()
    false_any = np.any((supported & (mu <= 0)[None, :]) | (reversed_ & (mu >= 0)[None, :]), axis=-1).mean()
    positive = mu > 0
    power = float(supported[:, positive].mean()) if positive.any() else float("nan")
    return SimulationSummary(
        sweeps, float(false_sup), float(false_rev), power, float(seeds.mean()), max_seeds, float(false_any)
    )
