"""The metric table: the test-set metrics every trial records, which of them are accuracy-like (proportions in
[0, 1], shown in points, at chance when a run diverged), and the hypothesis metric of one recorded row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The test-set metrics of a trial (columns of trials.parquet), in the order the recorder and the journal write them.
TEST_METRICS = ("test_acc", "test_balanced_acc", "test_loss", "test_mae", "test_off_by_one")
BOUNDED_METRICS = ("test_acc", "test_balanced_acc", "test_off_by_one")  # proportions in [0, 1]


def is_accuracy_like(metric: str) -> bool:
    """Accuracies and off-by-one rates (and the objective column of an accuracy objective): proportions in [0, 1]."""
    return metric.endswith("acc") or metric.endswith("off_by_one") or metric == "objective"


def metric_value(row: Mapping[str, Any], metric: str) -> float:
    """The hypothesis metric of a recorded row as the report reads it: failed → NaN, diverged without a value →
    chance (accuracy-like metrics)."""
    if row.get("status") == "failed":
        return float("nan")
    value = row.get(metric)
    value = float("nan") if value is None else float(value)
    if value != value and row.get("status") == "diverged" and row.get("chance") is not None:
        if is_accuracy_like(metric):
            return float(row["chance"])
    return value
