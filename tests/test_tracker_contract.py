"""The ``Tracker`` contract (``tests/tracker_contract.py``) on the null tracker and on W&B in offline mode."""

from __future__ import annotations

from tracker_contract import TrackerContract


class TestTracker(TrackerContract):
    """Every contract test, once per tracker in ``tracker_contract.BACKENDS``."""
