"""Read a results directory (trials.parquet, epochs.parquet, spec.resolved.yaml) into report inputs.

Only pyarrow/pandas/yaml: the report never imports the sweep engine, torch or ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsweep.errors import StoreError
from tlsweep.results.schema import ADDED_COLUMNS, EPOCHS_SCHEMA, FACTOR_COLUMNS, TRIALS_SCHEMA
from tlsweep.results.store import SPEC_FILE

CELL_FACTORS_ORDER = ("train_fraction", "epochs", "augmentation", "freeze_depth")
DIRECTIONS = ("greater", "less", "two-sided")
CORRECTIONS = ("holm", "bonferroni", "bh", "none")
_RUN_FIRST = "run `tlsweep run SPEC` first to produce it"


@dataclass(frozen=True)
class Hypothesis:
    metric: str
    treated: str
    baseline: str
    direction: str
    alpha: float
    correction: str
    margin: float

    @property
    def alternative(self) -> str:
        return self.direction


@dataclass
class Results:
    root: Path
    name: str
    spec: dict[str, Any]
    trials: pd.DataFrame  # every row of trials.parquet, plus `value` (the hypothesis metric, diverged → chance)
    epochs: pd.DataFrame
    hypothesis: Hypothesis
    cell_factors: list[str]  # factors that define cells (without init), in display order
    objective_metric: str
    objective_mode: str
    trials_per_cell: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy_like(self) -> bool:
        return is_accuracy_like(self.hypothesis.metric)

    @property
    def scale(self) -> float:
        """Multiplier from the metric's units to reported units (accuracies → points)."""
        return 100.0 if self.accuracy_like else 1.0

    @property
    def unit(self) -> str:
        return "points" if self.accuracy_like else self.hypothesis.metric


def is_accuracy_like(metric: str) -> bool:
    return metric.endswith("acc") or metric.endswith("off_by_one") or metric == "objective"


def _read_table(path: Path, schema_names: list[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise StoreError(f"{path}: cannot be read as Parquet ({exc}); rerun `tlsweep run SPEC` to rewrite it") from exc
    missing = [name for name in schema_names if name not in table.column_names and name not in ADDED_COLUMNS]
    if missing:
        raise StoreError(f"{path}: missing column(s) {missing} of the tlsweep schema; was it written by another "
                         "version of tlsweep? Rerun `tlsweep run SPEC`")
    return table.to_pandas()


def _read_spec(root: Path, notes: list[str]) -> dict[str, Any]:
    import yaml

    path = root / SPEC_FILE
    if not path.exists():
        notes.append(f"{path.name} is missing: the hypothesis defaults (test_acc, greater, alpha 0.05, Holm, "
                     "margin 0.02) and the arms found in the data are used")
        return {}
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StoreError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(spec, dict):
        raise StoreError(f"{path}: expected a mapping at the top level, got {type(spec).__name__}")
    return spec


def _hypothesis(spec: dict[str, Any], arms: list[str], path: Path, notes: list[str]) -> Hypothesis:
    raw = spec.get("hypothesis") or {}
    compare = (raw.get("compare") or {}).get("init")
    if compare is None:
        others = [arm for arm in arms if arm != "scratch"]
        if "scratch" in arms and len(others) == 1:
            compare = [others[0], "scratch"]
        elif len(arms) == 2:
            compare = sorted(arms)
        else:
            raise StoreError(f"{path}: hypothesis.compare.init is not set and the arms {arms} do not say which "
                             "is treated; add `hypothesis: {compare: {init: [TREATED, BASELINE]}}`")
        notes.append(f"hypothesis.compare.init not declared; compared {compare[0]} (treated) with {compare[1]}")
    if not (isinstance(compare, list) and len(compare) == 2):
        raise StoreError(f"{path}: hypothesis.compare.init must be [treated, baseline], got {compare!r}")
    direction = raw.get("direction", "greater")
    correction = raw.get("correction", "holm")
    alpha = float(raw.get("alpha", 0.05))
    margin = float(raw.get("equivalence_margin", 0.02))
    if direction not in DIRECTIONS:
        raise StoreError(f"{path}: hypothesis.direction must be one of {DIRECTIONS}, got {direction!r}")
    if correction not in CORRECTIONS:
        raise StoreError(f"{path}: hypothesis.correction must be one of {CORRECTIONS}, got {correction!r}")
    if not 0 < alpha < 1 or not margin > 0:
        raise StoreError(f"{path}: hypothesis.alpha must lie in (0, 1) and equivalence_margin be > 0, "
                         f"got alpha={alpha}, equivalence_margin={margin}")
    metric = raw.get("metric", "test_acc")
    return Hypothesis(str(metric), str(compare[0]), str(compare[1]), direction, alpha, correction, margin)


def load_results(results_dir: Path) -> Results:
    """Read and check a results directory; raise StoreError naming the path when it cannot be reported on."""
    root = Path(results_dir)
    trials_path = root / "trials.parquet"
    if not root.is_dir():
        raise StoreError(f"results directory {root} does not exist; {_RUN_FIRST}")
    if not trials_path.exists():
        raise StoreError(f"{root} holds no trials.parquet (not a results directory, or the sweep has not written "
                         f"any trial yet); {_RUN_FIRST}")
    notes: list[str] = []
    trials = _read_table(trials_path, TRIALS_SCHEMA.names)
    if trials.empty:
        raise StoreError(f"{trials_path} holds no trials yet; {_RUN_FIRST} and wait for trials to finish")
    epochs_path = root / "epochs.parquet"
    if epochs_path.exists():
        epochs = _read_table(epochs_path, EPOCHS_SCHEMA.names)
    else:
        notes.append("epochs.parquet is missing: no learning curves")
        epochs = pd.DataFrame({name: pd.Series(dtype=object) for name in EPOCHS_SCHEMA.names})
    spec = _read_spec(root, notes)
    arms = sorted(trials["arm"].dropna().unique().tolist())
    hypothesis = _hypothesis(spec, arms, root / SPEC_FILE, notes)
    if hypothesis.metric not in trials.columns:
        raise StoreError(f"{root / 'spec.resolved.yaml'}: hypothesis.metric {hypothesis.metric!r} is not a column "
                         f"of trials.parquet; use one of test_acc, test_balanced_acc, test_off_by_one, test_mae")
    for arm in (hypothesis.treated, hypothesis.baseline):
        if arm not in arms:
            notes.append(f"arm {arm!r} of the hypothesis has no trials in trials.parquet")
    ignored = sorted(set(arms) - {hypothesis.treated, hypothesis.baseline})
    if ignored:
        notes.append(f"arm(s) {ignored} are not part of the declared comparison and are left out of the tests")
    trials = trials.copy()
    trials["value"] = _metric_values(trials, hypothesis.metric, notes)
    objective = spec.get("objective") or {}
    design = spec.get("design") or {}
    declared = [name for name in (design.get("factors") or {}) if name != "init"]
    cell_factors = _cell_factors(trials, declared)
    budget = (design.get("budget") or {}).get("trials_per_cell")
    return Results(
        root=root, name=str(spec.get("name") or root.name), spec=spec, trials=trials, epochs=epochs,
        hypothesis=hypothesis, cell_factors=cell_factors,
        objective_metric=str(objective.get("metric", "val_acc")), objective_mode=str(objective.get("mode", "max")),
        trials_per_cell=int(budget) if budget is not None else None, notes=notes,
    )


def _metric_values(trials: pd.DataFrame, metric: str, notes: list[str]) -> pd.Series:
    """The hypothesis metric per row: failed rows NaN; diverged rows without a value get chance (accuracies)."""
    values = pd.to_numeric(trials[metric], errors="coerce").astype(float)
    status = trials["status"]
    values[status == "failed"] = np.nan
    diverged_missing = (status == "diverged") & values.isna()
    if diverged_missing.any():
        if is_accuracy_like(metric):
            values[diverged_missing] = trials.loc[diverged_missing, "chance"].astype(float)
        else:
            notes.append(f"{int(diverged_missing.sum())} diverged run(s) have no {metric} and no chance level for it;"
                         " they are left out of the tests")
    confirm_ok_nan = (trials["phase"] == "confirm") & (status == "ok") & values.isna()
    if confirm_ok_nan.any():
        notes.append(f"{int(confirm_ok_nan.sum())} confirm run(s) with status ok have no {metric} value (NaN); "
                     "they are left out of the tests")
    return values


def _cell_factors(trials: pd.DataFrame, declared: list[str]) -> list[str]:
    known = [name for name in FACTOR_COLUMNS if name != "init"]
    if declared:
        names = [name for name in declared if name in trials.columns]
    else:
        names = [name for name in known if trials[name].nunique(dropna=True) > 1 and name in trials.columns]
    for name in ("train_fraction", "epochs"):
        if name not in names:
            names.append(name)
    order = {name: i for i, name in enumerate(CELL_FACTORS_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda name: order.get(name, len(order)))
