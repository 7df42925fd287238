"""Per-class test accuracy and confusion matrices of the confirm runs: descriptive only (no tests, no claims).

Each confirm run of the ``best`` config records ``test_class_acc`` (JSON list, class order) and ``test_confusion``
(JSON K×K counts, row = true class, column = predicted class). Runs without them (results written before the columns
existed, diverged runs, failed runs) are counted and left out, and the report says so.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlsweep.errors import TlsweepError
from tlsweep.report.analysis import cell_levels
from tlsweep.report.formatting import describe_cell
from tlsweep.report.load import Results

ACCURACY_COLUMN = "test_class_acc"
CONFUSION_COLUMN = "test_confusion"


@dataclass
class ClassView:
    """Per-class test accuracy of the confirm runs (``best`` config), in accuracy units (0–1)."""

    class_names: list[str]  # one per class, in label order ("class 0", ... when the names are not recorded)
    named: bool  # the names come from the results (provenance.json or the spec), not indices
    # cell_id, arm, class_index, class, mean (over seeds), seeds (runs with per-class results)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    # cell_id, treated, baseline, class_index, class, difference (mean over paired seeds of treated − baseline), pairs
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: list[str] = field(default_factory=list)  # what is missing, in sentences

    @property
    def empty(self) -> bool:
        return self.accuracy.empty


@dataclass
class Confusion:
    """One arm's test confusion counts summed over the confirm seeds of one cell."""

    arm: str
    counts: np.ndarray  # K × K, row = true class, column = predicted class
    seeds: int


def _confirm_rows(results: Results) -> pd.DataFrame:
    t = results.trials
    return t[(t["phase"] == "confirm") & (t["config_kind"] == "best") & (t["status"] != "failed")]


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _class_vector(text: Any) -> np.ndarray | None:
    """A run's per-class accuracies (a class without test images → NaN); None when absent or malformed."""
    value = _parse(text)
    if not isinstance(value, list) or not value:
        return None
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
        return None
    return np.array([np.nan if v is None else float(v) for v in value])


def _confusion_matrix(text: Any, size: int) -> np.ndarray | None:
    value = _parse(text)
    if not isinstance(value, list) or len(value) != size:
        return None
    if not all(isinstance(row, list) and len(row) == size for row in value):
        return None
    try:
        counts = np.array(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return counts if np.isfinite(counts).all() and (counts >= 0).all() else None


def _ordered_arms(results: Results, present: set[str]) -> list[str]:
    return [a for a in results.arms if a in present] + sorted(present - set(results.arms))


def _per_seed(rows: pd.DataFrame, size: int) -> dict[int, np.ndarray]:
    """Seed → per-class accuracies (the mean when a seed somehow has two runs)."""
    vectors: dict[int, list[np.ndarray]] = {}
    for seed, text in zip(rows["seed"], rows[ACCURACY_COLUMN], strict=True):
        vector = _class_vector(text)
        if vector is not None and vector.size == size:
            vectors.setdefault(int(seed), []).append(vector)
    return {seed: np.mean(vs, axis=0) for seed, vs in vectors.items()}


def _class_count(rows: pd.DataFrame) -> int | None:
    """The number of classes: the most common length of the recorded per-class lists."""
    lengths = Counter(v.size for v in map(_class_vector, rows[ACCURACY_COLUMN]) if v is not None)
    return lengths.most_common(1)[0][0] if lengths else None


def _names(results: Results, size: int, missing: list[str]) -> tuple[list[str], bool]:
    names = results.class_names
    if names and len(names) == size:
        return list(names), True
    if names:
        missing.append(
            f"the recorded class names ({len(names)}) do not match the {size} classes of the per-class results; "
            "classes are shown by index"
        )
    else:
        missing.append(
            "the class names are not recorded in these results (provenance.json before tlsweep recorded them): "
            "classes are shown by label index"
        )
    return [f"class {i}" for i in range(size)], False


def class_view(results: Results) -> ClassView:
    """Each cell × arm's mean per-class test accuracy over its confirm seeds, and per comparison the mean paired
    per-class difference treated − baseline; with sentences on what is missing."""
    rows = _confirm_rows(results)
    if ACCURACY_COLUMN not in rows.columns:
        rows = rows.assign(**{ACCURACY_COLUMN: None})
    size = _class_count(rows)
    if size is None:
        why = (
            "no confirm runs"
            if rows.empty
            else "no confirm run records test_class_acc (results written before tlsweep recorded per-class "
            "accuracy, or every run diverged)"
        )
        return ClassView([], False, missing=[f"no per-class accuracy: {why}"])
    missing: list[str] = []
    names, named = _names(results, size, missing)
    accuracy: list[dict[str, Any]] = []
    seeds: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    levels = cell_levels(results)
    for cell in levels:
        cell_rows = rows[rows["cell_id"] == cell]
        for arm in _ordered_arms(results, set(cell_rows["arm"].dropna())):
            arm_rows = cell_rows[cell_rows["arm"] == arm]
            per_seed = seeds[(cell, arm)] = _per_seed(arm_rows, size)
            vectors = [_class_vector(t) for t in arm_rows[ACCURACY_COLUMN]]
            lacking = arm_rows[[v is None for v in vectors]]
            if not lacking.empty:
                diverged = int((lacking["status"] == "diverged").sum())
                why = f" ({diverged} diverged)" if diverged else ""
                missing.append(
                    f"{describe_cell(levels[cell])}, {arm}: {len(lacking)} of {len(arm_rows)} confirm run(s) have "
                    f"no per-class accuracy{why}; left out of the per-class means"
                )
            other = sum(v is not None and v.size != size for v in vectors)
            if other:
                missing.append(
                    f"{describe_cell(levels[cell])}, {arm}: {other} confirm run(s) record a number of classes other "
                    f"than {size}; left out"
                )
            stacked = np.array(list(per_seed.values())) if per_seed else np.full((0, size), np.nan)
            for index in range(size):
                column = stacked[:, index] if stacked.size else np.array([])
                finite = column[np.isfinite(column)]
                accuracy.append(
                    {
                        "cell_id": cell,
                        "arm": arm,
                        "class_index": index,
                        "class": names[index],
                        "mean": float(finite.mean()) if finite.size else np.nan,
                        "seeds": int(finite.size),
                    }
                )
    differences: list[dict[str, Any]] = []
    for cell in levels:
        for h in results.comparisons or [results.hypothesis]:
            treated, baseline = seeds.get((cell, h.treated), {}), seeds.get((cell, h.baseline), {})
            paired = sorted(set(treated) & set(baseline))
            delta = np.array([treated[s] - baseline[s] for s in paired]) if paired else np.full((0, size), np.nan)
            for index in range(size):
                column = delta[:, index] if delta.size else np.array([])
                finite = column[np.isfinite(column)]
                differences.append(
                    {
                        "cell_id": cell,
                        "treated": h.treated,
                        "baseline": h.baseline,
                        "class_index": index,
                        "class": names[index],
                        "difference": float(finite.mean()) if finite.size else np.nan,
                        "pairs": int(finite.size),
                    }
                )
    return ClassView(names, named, pd.DataFrame(accuracy), pd.DataFrame(differences), missing)


def pick_confusion_cell(results: Results, requested: str | None = None) -> str | None:
    """The cell whose confusion matrices the report draws: ``requested`` (a cell id), else the cell with the most
    training data (largest train fraction, then most epochs) among those with recorded confusion matrices.

    Raises:
        TlsweepError: ``requested`` names no cell of the results; the message lists the cell ids.
    """
    levels = cell_levels(results)
    if requested is not None:
        if requested not in levels:
            raise TlsweepError(
                f"--confusion-cell {requested!r} is not a cell of these results; choose one of {list(levels)}"
            )
        return requested
    rows = _confirm_rows(results)
    if CONFUSION_COLUMN not in rows.columns:
        return None
    recorded = set(rows.loc[rows[CONFUSION_COLUMN].notna(), "cell_id"])
    candidates = [cell for cell in levels if cell in recorded]
    if not candidates:
        return None

    def size(cell: str) -> tuple[float, float]:
        cell_level = levels[cell]
        return float(cell_level.get("train_fraction") or 1.0), float(cell_level.get("epochs") or 0.0)

    return max(candidates, key=size)  # max keeps the first of equals: the cell order of the report


def summed_confusion(results: Results, cell: str, size: int) -> list[Confusion]:
    """Each arm's ``size`` × ``size`` test confusion counts in ``cell``, summed over its confirm seeds (arms without a
    recorded matrix are left out)."""
    rows = _confirm_rows(results)
    if CONFUSION_COLUMN not in rows.columns:
        return []
    rows = rows[rows["cell_id"] == cell]
    out = []
    for arm in _ordered_arms(results, set(rows["arm"].dropna())):
        matrices = [
            m
            for m in (_confusion_matrix(t, size) for t in rows.loc[rows["arm"] == arm, CONFUSION_COLUMN])
            if m is not None
        ]
        if matrices:
            out.append(Confusion(arm, np.sum(matrices, axis=0), len(matrices)))
    return out


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of a true class predicted as each class); NaN for an empty row."""
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), np.nan)
