"""Ray Tune ``Searcher``s that hand out the planned trials of one phase each.

``TuneSearcher`` runs one Optuna study per study key (cell × arm) with an equal, fixed budget: Tune asks for
configs and it hands out, round-robin over the studies that still have budget (cell by cell, the arms side by
side), a trial asked from that study's own Optuna study. Each study only ever sees its own trials, so one cell's
results never steer another's, and every study gets exactly ``trials_per_cell`` trials. The recipe is enqueued as
the first trial of every study. ``SweepSearcher`` runs
both phases through one Tuner: the tune trials first, and each study's confirm trials as soon as its own tune budget
is recorded, so no slot waits for the slowest study of the tune phase; confirm trials go longest first (their
study's median tune trial), so the short ones fill the slots at the end instead of one long trial running alone.
All share ``PhaseSearcher``: the config format, when the work is over, and pickling for Tune's experiment snapshots.

Trials already finished in an earlier run (read back from ``trials.parquet``) are replayed into their studies (or
skipped) and not run again; that, not Ray's experiment restore, is how a sweep resumes.
"""

from __future__ import annotations

import abc
import json
import pickle
from collections import deque
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from tlsweep.design import (
    ConfirmStep,
    PlannedTrial,
    expected_trial_seconds,
    plan_confirm_now,
    plan_tune_trial,
    recipe_params,
    split_study_key,
    studies,
    study_key,
    trial_config,
    tune_complete_studies,
)
from tlsweep.engine.trainable import trial_message
from tlsweep.space import distributions_for, grid_points
from tlsweep.spec import SweepSpec


def _sampler(spec: SweepSpec, levels: dict[str, Any], index: int) -> optuna.samplers.BaseSampler:
    seed = spec.design.budget.seed * 10_007 + index
    name = spec.design.budget.sampler
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_points(spec.design.tune, levels) or {}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, spec.design.budget.trials_per_cell // 3))


def _cell_major(studies: dict[str, _Study]) -> list[str]:
    """Study keys cell by cell with the arms side by side (``studies(spec)`` lists one arm's cells, then the next
    arm's): every cell's comparison gets its trials early, and the first trials of a sweep run different arms at once
    (the frozen-feature arm's first trial computes the stored features; another trial of it would only wait)."""
    parts = {key: split_study_key(key) for key in studies}
    cells = list(dict.fromkeys(cell for cell, _ in parts.values()))
    arms = list(dict.fromkeys(arm for _, arm in parts.values()))
    return sorted(studies, key=lambda key: (cells.index(parts[key][0]), arms.index(parts[key][1])))


class _Study:
    """One Optuna study and the tune indices it has handed out."""

    def __init__(self, spec: SweepSpec, levels: dict[str, Any], index: int) -> None:
        self.levels = levels
        self.distributions = distributions_for(spec.design.tune, levels)
        direction = "maximize" if spec.objective.mode == "max" else "minimize"
        self.study = optuna.create_study(direction=direction, sampler=_sampler(spec, levels, index))
        self.free_indices = list(range(spec.design.budget.trials_per_cell))
        self.recipe = recipe_params(spec, levels)
        self.reissued: list[PlannedTrial] = []

    def replay(self, tune_index: int, params: dict[str, Any], status: str, objective: float | None) -> None:
        """Add a trial finished in an earlier run, so the sampler knows it and its index is not handed out again."""
        if tune_index in self.free_indices:
            self.free_indices.remove(tune_index)
        dists = {k: v for k, v in self.distributions.items() if k in params}
        values = {k: params[k] for k in dists}
        if status in ("ok", "diverged") and objective is not None and objective == objective:
            frozen = optuna.trial.create_trial(params=values, distributions=dists, value=objective)
        else:
            state = TrialState.PRUNED if status == "pruned" else TrialState.FAIL
            frozen = optuna.trial.create_trial(params=values, distributions=dists, state=state)
        self.study.add_trial(frozen)

    def reissue(self, trial: PlannedTrial) -> None:
        """Hand out this exact trial (a dead driver's unfinished one) before asking the sampler for new ones."""
        self.free_indices.remove(int(trial.tune_index or 0))
        self.reissued.append(trial)

    def ask(self) -> tuple[int, optuna.trial.Trial]:
        if self.reissued:
            trial = self.reissued.pop(0)
            self.study.enqueue_trial(trial.params, skip_if_exists=False)
            return int(trial.tune_index or 0), self.study.ask(self.distributions)
        tune_index = self.free_indices.pop(0)
        if tune_index == 0:
            self.study.enqueue_trial(self.recipe, skip_if_exists=False)
        return tune_index, self.study.ask(self.distributions)

    @property
    def budget_left(self) -> int:
        return len(self.free_indices) + len(self.reissued)


class PhaseSearcher(Searcher, abc.ABC):
    """What both phases share: hand out planned trials, one config each, and know when the phase is over.

    A subclass says which trial comes next (``next_trial``), how many are left (``remaining``) and how a trial lost
    with its node is handed out again (``requeue``). While any handed-out trial still runs, an empty plan answers
    None (ask again later), not ``FINISHED``: a trial lost with its node may still come back through ``requeue``.
    """

    phase: str  # "tune" | "confirm"

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(metric="val_metric", mode=spec.objective.mode)
        self.spec = spec
        self.num_threads = max(1, int(spec.resources.cpus_per_trial))
        self._live: dict[str, PlannedTrial] = {}  # Ray trial id -> the planned trial it runs

    @abc.abstractmethod
    def remaining(self) -> int:
        """Trials not yet handed out."""

    @abc.abstractmethod
    def requeue(self, planned: PlannedTrial) -> None:
        """Hand this trial out again, next, with the same index, params and seed (so the same id): its node was lost."""

    @abc.abstractmethod
    def next_trial(self, trial_id: str) -> PlannedTrial | None:
        """The trial to hand out to Ray trial ``trial_id``, or None when none is left."""

    def _last_chance(self, trial_id: str) -> PlannedTrial | None:
        """Asked when nothing runs and ``next_trial`` has nothing: a last look for work before the searcher says FINISHED."""
        return None

    # ---- Searcher API -------------------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        planned = self.next_trial(trial_id)
        if planned is None and not self._live:
            planned = self._last_chance(trial_id)
        if planned is None:
            return None if self._live else Searcher.FINISHED
        self._live[trial_id] = planned
        config = trial_config(self.spec, planned.levels, planned.params, planned.seed, num_threads=self.num_threads)
        return trial_message(planned, config, self.spec.objective.metric)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self._live.pop(trial_id, None)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__getstate__(), fh)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class TuneSearcher(PhaseSearcher):
    """The tune phase: one Optuna study per study key (cell × arm), round-robin, ``trials_per_cell`` trials each.

    ``done`` holds rows of trials finished earlier (columns of ``trials.parquet``, with ``params_json``): they are
    replayed into their studies and their indices are not handed out again. ``pending`` holds trials a dead
    driver had started: they are handed out again first, unchanged (same index, params and seed, so the same id).
    """

    phase = "tune"

    def __init__(
        self,
        spec: SweepSpec,
        *,
        done: list[dict[str, Any]] | None = None,
        pending: list[PlannedTrial] | None = None,
    ) -> None:
        super().__init__(spec)
        self._studies: dict[str, _Study] = {
            study_key(levels): _Study(spec, levels, index) for index, levels in enumerate(studies(spec))
        }
        self._asked: dict[str, optuna.trial.Trial] = {}  # Ray trial id -> its Optuna trial
        self._reported: dict[str, set[int]] = {}  # Ray trial id -> epochs already reported to Optuna
        for row in done or []:
            if row["phase"] != "tune":
                continue
            info = json.loads(row["params_json"])
            study = self._studies.get(study_key(info["levels"]))
            if study is not None:
                study.replay(int(row["tune_index"]), info["tuned"], row["status"], row.get("objective"))
        for trial in pending or []:
            study = self._studies.get(trial.study_key)
            if study is not None and trial.tune_index in study.free_indices:
                study.reissue(trial)
        self._order = deque(_cell_major(self._studies))

    def remaining(self) -> int:
        return sum(s.budget_left for s in self._studies.values())

    def requeue(self, planned: PlannedTrial) -> None:
        self._studies[planned.study_key].reissued.insert(0, planned)

    def hand_out(self, trial_id: str) -> PlannedTrial | None:
        """The next tune trial, for Ray trial ``trial_id``, followed until it completes (None: the budget is out)."""
        planned = self.next_trial(trial_id)
        if planned is not None:
            self._live[trial_id] = planned
        return planned

    def budget_handed_out(self, key: str) -> bool:
        """Every tune trial of study ``key`` was handed out."""
        study = self._studies.get(key)
        return study is not None and not study.budget_left

    def next_trial(self, trial_id: str) -> PlannedTrial | None:
        for _ in range(len(self._order)):
            key = self._order[0]
            self._order.rotate(-1)
            study = self._studies[key]
            if study.budget_left:
                tune_index, asked = study.ask()
                self._asked[trial_id] = asked
                return plan_tune_trial(self.spec, study.levels, tune_index, dict(asked.params))
        return None

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        planned = self._live.get(trial_id)
        super().on_trial_complete(trial_id, result, error)
        asked = self._asked.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        if planned is None or asked is None:
            return
        study = self._studies[planned.study_key].study
        if error or not result:
            study.tell(asked, state=TrialState.FAIL)
        elif not result.get("final"):  # stopped by ASHA: its intermediate values were already reported
            study.tell(asked, state=TrialState.PRUNED)
        else:  # the objective is a validation number; test metrics never reach the sampler
            value = result.get("objective")
            if value is None or value != value:
                study.tell(asked, state=TrialState.FAIL)
            else:
                study.tell(asked, float(value))

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        asked = self._asked.get(trial_id)
        if asked is None or result.get("final") or "val_metric" not in result:
            return
        value, step = result["val_metric"], int(result["epoch"])
        reported = self._reported.setdefault(trial_id, set())
        if value == value and step not in reported:  # a Ray retry from a checkpoint may report an epoch again
            reported.add(step)
            asked.report(float(value), step)


class SweepSearcher(PhaseSearcher):
    """Both phases in one Tuner: every tune trial (a ``TuneSearcher``), then confirm trials, each study's first
    look as soon as that study's tune budget is recorded (``tlsweep.design.plan_confirm_now``).

    ``rows()`` returns the trials recorded so far (``trials.parquet`` rows); it is read only when the confirm plan
    can have changed: a study's last tune trial or a look's last confirm trial finished, and once more before the
    searcher says it is done. Confirm trials recorded by an earlier run (in ``done``) are not handed out again.
    Queued confirm trials are handed out longest first (``tlsweep.design.expected_trial_seconds``: a study's
    median tune trial), a trial lost with its node before any of them.
    ``on_plan(step, tune_done)`` is told every new confirm plan and whether every study's tune budget is recorded.
    """

    phase = "sweep"

    def __init__(
        self,
        spec: SweepSpec,
        *,
        rows: Callable[[], list[dict[str, Any]]] | None,
        done: list[dict[str, Any]] | None = None,
        pending: list[PlannedTrial] | None = None,
        on_plan: Callable[[ConfirmStep, bool], None] | None = None,
    ) -> None:
        super().__init__(spec)
        self.tune = TuneSearcher(spec, done=done, pending=pending)
        self._rows = rows
        self._on_plan = on_plan
        self._confirm: list[PlannedTrial] = []  # longest expected first
        self._requeued: deque[PlannedTrial] = deque()  # confirm trials lost with their node: handed out first
        self._handed: set[str] = {r["trial_id"] for r in done or [] if r["phase"] == "confirm"}
        self._stale = True  # the confirm plan may have grown since it was last computed
        self.step: ConfirmStep | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm with the experiment (for Tuner.restore, which tlsweep does not use:
        # it resumes from trials.parquet); the live links to the recorder cannot travel. A copy plans no confirm
        # trials.
        return {**self.__dict__, "_rows": None, "_on_plan": None}

    def remaining(self) -> int:
        """Trials known now and not yet handed out (later confirm trials are planned as tune results arrive)."""
        return self.tune.remaining() + len(self._requeued) + len(self._confirm)

    def requeue(self, planned: PlannedTrial) -> None:
        if planned.phase == "tune":
            self.tune.requeue(planned)
        else:
            self._requeued.appendleft(planned)

    def replan(self) -> None:
        """Read the recorded rows and queue every confirm trial that may run now and was not handed out yet."""
        self._stale = False
        if self._rows is None:
            return
        rows = self._rows()
        self.step = step = plan_confirm_now(self.spec, rows)
        tune_done = len(tune_complete_studies(self.spec, rows)) == len(studies(self.spec))
        recorded = {r["trial_id"] for r in rows if r["phase"] == "confirm"}
        new = [t for t in step.trials if t.trial_id not in self._handed and t.trial_id not in recorded]
        self._handed.update(t.trial_id for t in new)
        expected = expected_trial_seconds(rows)
        self._confirm = sorted([*self._confirm, *new], key=lambda t: -expected.get(t.study_key, 0.0))  # stable
        if self._on_plan is not None:
            self._on_plan(step, tune_done)

    def next_trial(self, trial_id: str) -> PlannedTrial | None:
        planned = self.tune.hand_out(trial_id)
        if planned is not None:
            return planned
        if self._requeued:
            return self._requeued.popleft()
        if self._stale:  # a study's tune budget was just recorded: its confirm trials may be the longest
            self.replan()
        return self._confirm.pop(0) if self._confirm else None

    def _last_chance(self, trial_id: str) -> PlannedTrial | None:
        self.replan()
        return self.next_trial(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        planned = self._live.get(trial_id)
        super().on_trial_complete(trial_id, result, error)
        if planned is None:
            return
        if planned.phase == "tune":
            self.tune.on_trial_complete(trial_id, result, error)
            live = any(p.phase == "tune" and p.study_key == planned.study_key for p in self._live.values())
            self._stale |= self.tune.budget_handed_out(planned.study_key) and not live
        else:  # the last confirm trial of a look: the next look (or the end) is decided on the recorded rows
            live = any(p.phase == "confirm" for p in self._live.values())
            self._stale |= not self._confirm and not self._requeued and not live

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.tune.on_trial_result(trial_id, result)
