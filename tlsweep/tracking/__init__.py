"""Weights & Biases mirror of a sweep: offline-safe, driver-side, never in a sweep's way.

Parquet is the source of truth; W&B is a view of it. ``make_tracker`` gives the sweep driver a ``Tracker``;
``log_report_summary`` logs the report; ``tlsweep.tracking.dashboard`` builds the saved workspace view.
wandb itself is imported only when a run is actually logged.
"""

from __future__ import annotations

from tlsweep.tracking.settings import WandbSettings, api_key_configured, resolve_mode
from tlsweep.tracking.summary import log_report_summary
from tlsweep.tracking.tracker import NullTracker, Tracker, WandbTracker, flatten_config, make_tracker

__all__ = [
    "NullTracker",
    "Tracker",
    "WandbSettings",
    "WandbTracker",
    "api_key_configured",
    "flatten_config",
    "log_report_summary",
    "make_tracker",
    "resolve_mode",
]
