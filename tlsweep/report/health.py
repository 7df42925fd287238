"""Design health read from the results: optimizer steps per cell, cells where every arm sits at chance, and tuned
optima at the edge of their search range."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlsweep.report.analysis import PRIMARY_KIND, cell_levels
from tlsweep.report.formatting import describe_cell, fmt_level
from tlsweep.report.load import Results

EDGE_SHARE = 0.05  # a selected value within 5% of the range's width (log width for log ranges) of an end


@dataclass(frozen=True)
class ArmLevel:
    arm: str
    mean: float
    chance: float
    se: float  # standard error of the mean over the arm's runs (0 with one run)

    def at_chance(self, margin: float) -> bool:
        """Not above chance by more than the equivalence margin, nor by more than 1.96 standard errors."""
        return self.mean - self.chance <= max(margin, 1.96 * self.se)


@dataclass(frozen=True)
class CellHealth:
    cell_id: str
    levels: dict[str, Any]
    steps: int | None  # optimizer steps of one confirm run (the fewest over the compared arms)
    arms: tuple[ArmLevel, ...]
    at_chance: bool  # no compared arm is above chance by more than max(equivalence margin, 1.96 SE)

    @property
    def informative(self) -> bool:
        return not self.at_chance


@dataclass(frozen=True)
class EdgeOptimum:
    cell_id: str
    levels: dict[str, Any]
    arm: str
    parameter: str
    value: float
    low: float
    high: float
    edge: str  # "lower" | "upper"

    def sentence(self) -> str:
        return (
            f"{describe_cell(self.levels)} ({self.arm}): the selected {self.parameter} = {self.value:.3g} lies at "
            f"the {self.edge} edge of its search range [{fmt_level(self.low)}, {fmt_level(self.high)}]; the optimum "
            f"may lie outside it: widen design.tune.{self.parameter} "
            f"({'lower low' if self.edge == 'lower' else 'raise high'}) and rerun with --new"
        )


def cell_health(results: Results, config_kind: str = PRIMARY_KIND) -> dict[str, CellHealth]:
    """Per cell of the confirm phase: steps per run, each compared arm's mean against chance, and whether the cell
    is uninformative: no compared arm lies above chance by more than the equivalence margin (or, with noisy seeds,
    by more than 1.96 standard errors of its mean). Accuracy-like metrics only."""
    hyp = results.hypothesis
    trials = results.trials
    confirm = trials[(trials["phase"] == "confirm") & (trials["config_kind"] == config_kind)]
    levels = cell_levels(results)
    out: dict[str, CellHealth] = {}
    for cell in levels:
        rows = confirm[confirm["cell_id"] == cell]
        if rows.empty:
            continue
        arms = []
        for arm in (hyp.treated, hyp.baseline):
            arm_rows = rows[(rows["arm"] == arm) & rows["value"].notna()]
            chance = pd.to_numeric(arm_rows["chance"], errors="coerce").dropna()
            if arm_rows.empty or chance.empty:
                continue
            values = arm_rows["value"].astype(float)
            se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
            arms.append(ArmLevel(arm, float(values.mean()), float(chance.iloc[0]), se))
        at_chance = results.accuracy_like and len(arms) == 2 and all(a.at_chance(hyp.margin) for a in arms)
        steps = pd.to_numeric(
            rows.loc[rows["arm"].isin([hyp.treated, hyp.baseline]), "optimizer_steps"], errors="coerce"
        ).dropna()
        out[cell] = CellHealth(
            cell, levels[cell], int(steps.min()) if not steps.empty else None, tuple(arms), bool(at_chance)
        )
    return out


def edge_optima(results: Results, config_kind: str = PRIMARY_KIND) -> list[EdgeOptimum]:
    """Selected (confirmed) values of numeric tuned parameters that sit at an end of their search range."""
    spec = results.spec
    if spec is None or not spec.design.tune:
        return []
    trials = results.trials
    confirm = trials[(trials["phase"] == "confirm") & (trials["config_kind"] == config_kind)]
    levels = cell_levels(results)
    found = []
    for (cell, arm), rows in confirm.groupby(["cell_id", "arm"], sort=False):
        tuned = _tuned_params(rows["params_json"].iloc[0])
        for name, entry in spec.design.tune.items():
            value = tuned.get(name)
            if entry.type == "categorical" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            low, high = float(entry.low or 0.0), float(entry.high or 0.0)
            position = _position(float(value), low, high, log=entry.log)
            if position is None:
                continue
            edge = "lower" if position <= EDGE_SHARE else "upper" if position >= 1 - EDGE_SHARE else None
            if edge is not None:
                found.append(
                    EdgeOptimum(str(cell), levels.get(str(cell), {}), str(arm), name, float(value), low, high, edge)
                )
    order = {cell: i for i, cell in enumerate(levels)}
    return sorted(found, key=lambda e: (order.get(e.cell_id, len(order)), e.arm, e.parameter))


def _tuned_params(text: Any) -> dict[str, Any]:
    try:
        info = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    tuned = info.get("tuned") if isinstance(info, dict) else None
    return tuned if isinstance(tuned, dict) else {}


def _position(value: float, low: float, high: float, *, log: bool) -> float | None:
    if not high > low:
        return None
    if log:
        if low <= 0 or value <= 0:
            return None
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)
