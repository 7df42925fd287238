"""The ``Tracker`` contract, run over every tracker the sweep driver may get (the ``StoreContract`` pattern).

``TrackerContract``'s ``backend`` fixture is parametrized over ``BACKENDS``: the null tracker (W&B disabled) and the
W&B tracker in offline mode (runs written under the results directory, no network). The same calls behave per
``tlsweep.tracking.tracker.Tracker``'s contract on both: they return at once and never raise, a trial whose start
was missed is started on its first event, ``close`` is idempotent and bounded, events after it are ignored.
W&B specifics (run contents, resume, degraded online mode, injected wandb failures) stay in ``test_tracking.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tlsweep.tracking import NullTracker, Tracker, WandbSettings, WandbTracker
from tlsweep.tracking.tracker import wandb_run_id

BACKENDS = ("null", "offline")


@dataclass
class Backend:
    """A tracker under test and what it leaves on disk."""

    name: str
    tracker: Tracker
    results_dir: Path

    @property
    def mirrors(self) -> bool:
        """Whether trials become runs on disk (offline W&B) or go nowhere (null)."""
        return self.name == "offline"

    def runs(self) -> list[str]:
        """Run ids of the runs written under the results directory (``offline-run-<time>-<id>``), sorted."""
        return sorted(path.name.split("-", 3)[3] for path in (self.results_dir / "wandb").glob("offline-run-*"))

    def expected_runs(self, *trial_ids: str) -> list[str]:
        return sorted(wandb_run_id(t) for t in trial_ids) if self.mirrors else []


def drive(tracker: Tracker, trial_ids: list[str], epochs: int = 2) -> None:
    """A sweep's calls, interleaved the way concurrent trials report."""
    for index, trial_id in enumerate(trial_ids):
        config = {"params": {"lr": 0.01 * (index + 1)}, "cell_id": f"cell{index}", "seed": index}
        tracker.trial_started(trial_id, name=f"trial-{index}", config=config, job_type="tune")
    for epoch in range(1, epochs + 1):
        for trial_id in trial_ids:
            tracker.trial_epoch(trial_id, epoch, {"val_acc": 0.1 * epoch, "train_loss": 1.0 / epoch})
    for trial_id in trial_ids:
        tracker.trial_finished(trial_id, summary={"objective": 0.2, "status": "ok"}, status="ok")


class TrackerContract:
    """What every ``Tracker`` promises the sweep driver."""

    @pytest.fixture(params=BACKENDS)
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
        results = tmp_path / "results"
        if request.param == "null":
            tracker: Tracker = NullTracker()
        else:
            tracker = WandbTracker(WandbSettings(), sweep_name="contract", results_dir=results, mode="offline")
        yield Backend(request.param, tracker, results)
        tracker.close(timeout_s=60)  # idempotent: lets a tracker a test left busy finish its runs

    def test_a_sweeps_calls_return_at_once_and_every_trial_is_mirrored(self, backend: Backend) -> None:
        tracker = backend.tracker
        assert tracker.mode == ("offline" if backend.mirrors else "disabled")
        started = time.monotonic()
        drive(tracker, ["t0", "t1", "t2"], epochs=3)
        assert time.monotonic() - started < 0.5, "driver-side calls must only enqueue"
        tracker.close(timeout_s=60)
        assert backend.runs() == backend.expected_runs("t0", "t1", "t2")
        assert backend.results_dir.exists() == backend.mirrors  # the null tracker writes nothing

    def test_close_is_idempotent_and_later_events_are_ignored(self, backend: Backend) -> None:
        tracker = backend.tracker
        drive(tracker, ["a"])
        tracker.close(timeout_s=60)
        tracker.close(timeout_s=60)
        tracker.close()
        drive(tracker, ["after-close"])  # neither raises nor starts a run
        tracker.close(timeout_s=60)
        assert backend.runs() == backend.expected_runs("a")

    def test_a_trial_whose_start_was_missed_is_started_on_its_first_event(self, backend: Backend) -> None:
        tracker = backend.tracker  # a restored driver sees trials that were already running
        tracker.trial_epoch("late", 3, {"val_acc": 0.5})
        tracker.trial_finished("late", summary={"objective": 0.5}, status="ok")
        tracker.trial_finished("unseen", summary={}, status="failed")
        tracker.close(timeout_s=60)
        assert backend.runs() == backend.expected_runs("late", "unseen")

    def test_odd_ids_and_values_never_raise(self, backend: Backend) -> None:
        tracker = backend.tracker
        odd_id = "tune:cell/1 #2"
        config = {
            "nested": {"deep": {"x": 1}},
            "levels": [1, 2],
            "none": None,
            "path": Path("/tmp"),
            "n": np.int64(3),
            "lr": np.float32(0.5),
        }
        tracker.trial_started(odd_id, name="odd", config=config, job_type="confirm")
        metrics = {"val_acc": math.nan, "val_loss": math.inf, "note": "text", "missing": None, "acc": np.float64(1)}
        tracker.trial_epoch(odd_id, np.int64(1), metrics)  # type: ignore[arg-type]
        tracker.trial_finished(odd_id, summary={"best": {"epoch": 1}, "objective": None}, status="diverged")
        tracker.close(timeout_s=60)
        assert backend.runs() == backend.expected_runs(odd_id)

    def test_sync_command_names_the_offline_runs_or_nothing(self, backend: Backend) -> None:
        tracker = backend.tracker
        expected = f"wandb sync {backend.results_dir.absolute() / 'wandb'}" if backend.mirrors else None
        assert tracker.sync_command() == expected
        drive(tracker, ["s"], epochs=1)
        tracker.close(timeout_s=60)
        assert tracker.sync_command() == expected

    def test_close_waits_at_most_its_timeout(self, backend: Backend) -> None:
        tracker = backend.tracker
        drive(tracker, [f"busy{i}" for i in range(4)], epochs=3)
        started = time.monotonic()
        tracker.close(timeout_s=0.2)
        assert time.monotonic() - started < 1.5

    def test_close_of_a_complete_sweep_without_a_w_and_b_sweep(self, backend: Backend) -> None:
        tracker = backend.tracker  # complete=True marks a W&B Sweep finished; without one it changes nothing
        drive(tracker, ["c"], epochs=1)
        tracker.close(timeout_s=60, complete=True)
        tracker.close(timeout_s=60, complete=True)
        assert tracker.sweep_url() is None
        assert backend.runs() == backend.expected_runs("c")
