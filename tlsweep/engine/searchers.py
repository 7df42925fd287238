"""A Ray Tune ``Searcher`` that runs one Optuna study per study key (cell × arm) with an equal, fixed budget.

Tune asks for configs; this searcher hands out, round-robin over the studies that still have budget, either a
fixed planned trial (confirm phase) or a trial asked from that study's own Optuna study (tune phase). Each study
only ever sees its own trials, so one cell's results never steer another's, and every study gets exactly
``trials_per_cell`` trials. The recipe is enqueued as the first trial of every study.

Trials already finished in an earlier run (read back from ``trials.parquet``) are replayed into their studies and
not run again; that, not Ray's experiment restore, is how a sweep resumes.
"""

from __future__ import annotations

import pickle
from collections import deque
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from tlsweep.design import PlannedTrial, plan_tune_trial, recipe_params, study_key, trial_config
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


class PlanSearcher(Searcher):
    """Hands out the trials of one phase: asked from per-study Optuna studies (tune) or from a fixed list (confirm).

    ``metric`` is the objective column name in the final result of every trial; ``done`` holds rows of trials
    finished earlier (columns of ``trials.parquet``, with ``params_json``) that must not run again.
    """

    def __init__(
        self,
        spec: SweepSpec,
        *,
        phase: str,
        fixed: list[PlannedTrial] | None = None,
        done: list[dict[str, Any]] | None = None,
        pending: list[PlannedTrial] | None = None,
    ) -> None:
        super().__init__(metric="val_metric", mode=spec.objective.mode)
        self.spec = spec
        self.phase = phase
        self.num_threads = max(1, int(spec.resources.cpus_per_trial))
        self._studies: dict[str, _Study] = {}
        self._queue: deque[PlannedTrial] = deque()
        self._live: dict[str, tuple[PlannedTrial, optuna.trial.Trial | None]] = {}
        self._reported: dict[str, set[int]] = {}  # Ray trial id -> epochs already reported to Optuna
        done_ids = {row["trial_id"] for row in done or []}
        if phase == "tune":
            import json

            for index, levels in enumerate(spec.studies()):
                self._studies[study_key(levels)] = _Study(spec, levels, index)
            for row in done or []:
                if row["phase"] != "tune":
                    continue
                info = json.loads(row["params_json"])
                study = self._studies.get(study_key(info["levels"]))
                if study is not None:
                    study.replay(int(row["tune_index"]), info["tuned"], row["status"], row.get("objective"))
            for trial in pending or []:  # started by a driver that died: same index and params, so same id
                study = self._studies.get(trial.study_key)
                if study is not None and trial.tune_index in study.free_indices:
                    study.reissue(trial)
        else:
            self.planned = list(fixed or [])
            self._queue.extend(t for t in self.planned if t.trial_id not in done_ids)
        self._order = deque(self._studies)

    # ---- what is left -------------------------------------------------------------------------------------------
    def remaining(self) -> int:
        """Trials not yet handed out."""
        if self.phase == "tune":
            return sum(s.budget_left for s in self._studies.values())
        return len(self._queue)

    def _next_tune_trial(self) -> tuple[PlannedTrial, optuna.trial.Trial] | None:
        for _ in range(len(self._order)):
            key = self._order[0]
            self._order.rotate(-1)
            study = self._studies[key]
            if study.budget_left:
                tune_index, ot = study.ask()
                planned = plan_tune_trial(self.spec, study.levels, tune_index, dict(ot.params))
                return planned, ot
        return None

    # ---- Searcher API -------------------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def requeue(self, planned: PlannedTrial) -> None:
        """Hand this trial out again, next, with the same index, params and seed (so the same id): its node was lost."""
        if self.phase == "tune":
            self._studies[planned.study_key].reissued.insert(0, planned)
        else:
            self._queue.appendleft(planned)

    def _finished_or_wait(self) -> str | None:
        # while trials run, one may still come back through requeue(): Tune must keep asking
        return None if self._live else Searcher.FINISHED

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.phase == "tune":
            nxt = self._next_tune_trial()
            if nxt is None:
                return self._finished_or_wait()
            planned, ot = nxt
            self._live[trial_id] = (planned, ot)
        else:
            if not self._queue:
                return self._finished_or_wait()
            planned = self._queue.popleft()
            self._live[trial_id] = (planned, None)
        config = trial_config(self.spec, planned.levels, planned.params, planned.seed, num_threads=self.num_threads)
        return {"meta": planned.meta(), "trial": config.to_dict(), "objective_metric": self.spec.objective.metric}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        planned, ot = self._live.pop(trial_id, (None, None))
        self._reported.pop(trial_id, None)
        if planned is None or ot is None:
            return
        study = self._studies[planned.study_key].study
        if error or not result:
            study.tell(ot, state=TrialState.FAIL)
        elif not result.get("final"):  # stopped by ASHA: its intermediate values were already reported
            study.tell(ot, state=TrialState.PRUNED)
        else:
            value = result.get("objective")
            if value is None or value != value:
                study.tell(ot, state=TrialState.FAIL)
            else:
                study.tell(ot, float(value))

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        _planned, ot = self._live.get(trial_id, (None, None))
        if ot is None or result.get("final") or "val_metric" not in result:
            return
        value, step = result["val_metric"], int(result["epoch"])
        reported = self._reported.setdefault(trial_id, set())
        if value == value and step not in reported:  # a Ray retry from a checkpoint may report an epoch again
            reported.add(step)
            ot.report(float(value), step)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
