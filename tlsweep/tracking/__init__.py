"""Weights & Biases mirror of a sweep: offline-safe, driver-side, never in a sweep's way.

Parquet is the source of truth; W&B is a view of it. ``make_tracker`` gives the sweep driver a ``Tracker``;
``log_report_summary`` logs the report; ``tlsweep.tracking.wandb_workspace`` builds the saved workspace view.
wandb itself is imported only when a run is actually logged. The names below are imported lazily, so the spec can
use ``tlsweep.tracking.wandb_settings`` without loading the tracker (and what the tracker imports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlsweep.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "NullTracker": "tlsweep.tracking.tracker",
    "Tracker": "tlsweep.tracking.tracker",
    "WandbSettings": "tlsweep.tracking.wandb_settings",
    "WandbTracker": "tlsweep.tracking.tracker",
    "api_key_configured": "tlsweep.tracking.wandb_settings",
    "flatten_config": "tlsweep.tracking.tracker",
    "log_report_summary": "tlsweep.tracking.summary",
    "make_tracker": "tlsweep.tracking.tracker",
    "resolve_mode": "tlsweep.tracking.wandb_settings",
}

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

if TYPE_CHECKING:
    from tlsweep.tracking.summary import log_report_summary
    from tlsweep.tracking.tracker import NullTracker, Tracker, WandbTracker, flatten_config, make_tracker
    from tlsweep.tracking.wandb_settings import WandbSettings, api_key_configured, resolve_mode


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
