"""Render a sweep's report wherever its results live, and mirror it to W&B.

Local results: the report is written next to them. Remote results (``s3://``, ``gs://``): the Parquet files are
downloaded to a temporary directory, the report is built there and uploaded to ``<results>/report``. Either way
the report's tables, figures and verdict are logged to the sweep's W&B summary run when tracking is on.
Imports neither torch nor ray.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tlsweep.results.store import ResultsStore

if TYPE_CHECKING:
    from tlsweep.report import ReportResult

log = logging.getLogger(__name__)


def publish_report(
    store: ResultsStore,
    *,
    wandb_mode: str | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    formats: Sequence[str] = ("md", "html"),
    confusion_cell: str | None = None,
) -> tuple[ReportResult, str]:
    """Build the report of ``store``'s results; returns it and where report.md is (a path or a URI)."""
    from tlsweep.report import build_report

    local = store.local_dir()
    staging = local if local is not None else store.download(Path(tempfile.mkdtemp(prefix="tlsweep-report-")))
    result = build_report(staging, out_dir=out_dir, seed=seed, formats=formats, confusion_cell=confusion_cell)
    if local is None and out_dir is None:
        store.upload_dir(staging / "report", "report")
        where = f"{store.location.uri}/report/report.md"
    else:
        where = str(result.markdown_path or result.out_dir)
    _mirror_to_wandb(staging, result, wandb_mode)
    return result, where


def _mirror_to_wandb(staging: Path, result: ReportResult, wandb_mode: str | None) -> None:
    from tlsweep.tracking import WandbSettings, log_report_summary

    spec = result.spec
    settings = spec.tracking.wandb if spec is not None else WandbSettings()
    tables = {
        "cells": result.cell_table,
        "recipe": result.recipe_table,
        "attrition": result.attrition,
        "tuning": result.tuning,
        "design_model": result.model,
    }
    if result.classes is not None:
        tables["class_accuracy"] = result.classes.accuracy
    if len(result.comparisons) > 1:  # each comparison's tables under its own names (the ones above: the first)
        for part in result.comparisons:
            key = f"{part.treated}_vs_{part.baseline}"
            tables.update(
                {f"cells/{key}": part.cell_table, f"recipe/{key}": part.recipe_table, f"design_model/{key}": part.model}
            )
    log_report_summary(
        settings,
        sweep_name=spec.name if spec is not None else staging.name,
        results_dir=staging,
        tables={name: table for name, table in tables.items() if table is not None and not table.empty},
        figures=list(result.figures.values()),
        verdict=result.verdict_text,
        mode_override=wandb_mode,
    )
