"""ASHA early stopping inside the tune phase, one independent ASHA per study (cell × arm).

A single ASHA over the whole sweep would compare a 2-epoch trial with a 10-epoch trial at the same rung, i.e.
stop trials across the epochs factor; here every study has its own brackets with ``max_t`` = its own epochs.
Confirm trials share the Tuner with tune trials and are never stopped: they run every epoch (FIFO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from tlsweep.engine.trainable import planned_of, settings_of

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from tlsweep.spec import EarlyStoppingSpec


class PerStudyASHA(FIFOScheduler):
    def __init__(self, settings: EarlyStoppingSpec, *, mode: str) -> None:
        super().__init__()
        self.settings = settings
        self.mode = mode
        self._by_study: dict[str, AsyncHyperBandScheduler] = {}
        self.stopped: set[str] = set()  # Ray trial ids this scheduler stopped early (recorded as "pruned")

    @staticmethod
    def _tuned(trial: Trial) -> bool:
        return planned_of(trial.config).phase == "tune"

    def _asha(self, trial: Trial) -> AsyncHyperBandScheduler:
        key = planned_of(trial.config).study_key
        if key not in self._by_study:
            epochs = settings_of(trial.config).epochs
            self._by_study[key] = AsyncHyperBandScheduler(
                time_attr="epoch",
                metric="val_metric",
                mode=self.mode,
                max_t=max(epochs, 1),
                grace_period=min(self.settings.grace_period, max(epochs, 1)),
                reduction_factor=self.settings.reduction_factor,
                stop_last_trials=False,  # the last epoch is followed by the test report
            )
        return self._by_study[key]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if self._tuned(trial):
            self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if result.get("final") or not self._tuned(trial):
            return TrialScheduler.CONTINUE
        decision = self._asha(trial).on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            self.stopped.add(trial.trial_id)
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        if self._tuned(trial):
            self._asha(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        if self._tuned(trial):
            self._asha(trial).on_trial_remove(tune_controller, trial)
