"""Test-only planning helpers: the first confirm look planned from tune rows alone, the confirm seeds, and a searcher
that hands out a fixed list of planned trials (the engine plans confirm trials with ``tlsweep.design.plan_confirm_step``
and ``plan_confirm_now`` inside ``SweepSearcher``)."""

from __future__ import annotations

from collections import deque
from typing import Any

from tlsweep.design import PlannedTrial, confirm_seed, plan_confirm_step
from tlsweep.engine.searchers import PhaseSearcher
from tlsweep.spec import SweepSpec


def plan_confirm(spec: SweepSpec, tune_rows: list[dict[str, Any]]) -> tuple[list[PlannedTrial], list[str]]:
    """Confirm trials for every study from the finished tune phase (adaptive: the first look's); also the studies
    that could not be confirmed."""
    step = plan_confirm_step(spec, [row for row in tune_rows if row["phase"] == "tune"])
    return step.trials, step.skipped


def confirm_seeds(spec: SweepSpec) -> list[int]:
    """Every replicate seed of the confirm phase (adaptive: up to ``max_seeds``)."""
    return [confirm_seed(spec, r) for r in range(spec.confirm.max_seeds)]


class ConfirmSearcher(PhaseSearcher):
    """The confirm phase: hands out a fixed list of planned trials (``planned``) in order.

    Trials whose id is in ``done`` (rows of ``trials.parquet``) were recorded by an earlier run and are skipped.
    """

    phase = "confirm"

    def __init__(
        self, spec: SweepSpec, *, planned: list[PlannedTrial], done: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(spec)
        self.planned = list(planned)
        done_ids = {row["trial_id"] for row in done or []}
        self._queue: deque[PlannedTrial] = deque(t for t in self.planned if t.trial_id not in done_ids)

    def remaining(self) -> int:
        return len(self._queue)

    def requeue(self, planned: PlannedTrial) -> None:
        self._queue.appendleft(planned)

    def next_trial(self, trial_id: str) -> PlannedTrial | None:
        return self._queue.popleft() if self._queue else None
