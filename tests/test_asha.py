"""``PerStudyASHA`` with fake Ray trials: early stopping inside a study, never across studies or the epochs factor."""

from __future__ import annotations

import pytest
from ray.tune.schedulers import TrialScheduler
from ray_fakes import FakeTrial, confirm_trial, demo_spec, epoch_result, final_result, tune_trial

from tlsweep.design import studies
from tlsweep.engine.asha import PerStudyASHA

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _spec(mode: str = "max"):
    metric = "val_acc" if mode == "max" else "val_loss"
    return demo_spec(
        design__factors__epochs=[2, 8],
        design__early_stopping={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        objective={"metric": metric, "mode": mode},
    )


def _trials(spec, study: int, *names: str) -> list[FakeTrial]:
    return [FakeTrial.of(spec, tune_trial(spec, study, index), name) for index, name in enumerate(names)]


def _scheduler(spec, trials: list[FakeTrial]) -> PerStudyASHA:
    asha = PerStudyASHA(spec.design.early_stopping, mode=spec.objective.mode)
    assert asha.set_search_properties("ignored", "min")  # the spec's objective, never Tune's metric/mode
    for trial in trials:
        asha.on_trial_add(None, trial)
    return asha


def test_trials_are_compared_only_within_their_own_study() -> None:
    spec = _spec()
    short_levels, long_levels = studies(spec)[0], studies(spec)[1]
    assert {k: v for k, v in short_levels.items() if k != "epochs"} == {
        k: v for k, v in long_levels.items() if k != "epochs"
    }
    assert (short_levels["epochs"], long_levels["epochs"]) == (2, 8)  # the same cell but for the epochs factor
    long_a, long_b = _trials(spec, 1, "long-a", "long-b")
    short_a, short_b = _trials(spec, 0, "short-a", "short-b")
    scratch = _trials(spec, 5, "scratch-a")[0]  # another arm, same epochs
    asha = _scheduler(spec, [long_a, long_b, short_a, short_b, scratch])

    assert asha.on_trial_result(None, long_a, epoch_result(1, 0.9)) == CONTINUE
    # far worse than the 8-epoch trial at the same rung, but alone in its own study: it goes on
    assert asha.on_trial_result(None, short_a, epoch_result(1, 0.05)) == CONTINUE
    assert asha.on_trial_result(None, scratch, epoch_result(1, 0.01)) == CONTINUE
    assert asha.on_trial_result(None, long_b, epoch_result(1, 0.1)) == STOP
    assert asha.on_trial_result(None, short_b, epoch_result(1, 0.5)) == CONTINUE  # better than its own study's
    assert asha.stopped == {"long-b"}
    assert len(asha._by_study) == 3


def test_a_worse_trial_of_the_same_study_is_stopped_and_remembered() -> None:
    spec = _spec()
    trials = _trials(spec, 1, "a", "b", "c")
    asha = _scheduler(spec, trials)
    assert asha.on_trial_result(None, trials[0], epoch_result(1, 0.6)) == CONTINUE
    assert asha.on_trial_result(None, trials[1], epoch_result(1, 0.7)) == CONTINUE
    assert asha.on_trial_result(None, trials[2], epoch_result(1, 0.2)) == STOP
    assert asha.on_trial_result(None, trials[1], epoch_result(2, 0.8)) == CONTINUE
    assert asha.on_trial_result(None, trials[0], epoch_result(2, 0.65)) == STOP
    assert asha.stopped == {"c", "a"}


def test_the_final_report_is_never_stopped() -> None:
    spec = _spec()
    good, poor = _trials(spec, 0, "good", "poor")
    asha = _scheduler(spec, [good, poor])
    assert asha.on_trial_result(None, good, epoch_result(1, 0.9)) == CONTINUE
    # the last report follows the last epoch and carries the test metrics: it must arrive
    final = final_result([epoch_result(1, 0.1)], epoch=1)
    assert asha.on_trial_result(None, poor, final) == CONTINUE
    assert asha.stopped == set()


def test_mode_min_stops_the_larger_loss() -> None:
    spec = _spec(mode="min")
    low, high = _trials(spec, 1, "low", "high")
    asha = _scheduler(spec, [low, high])
    assert asha.on_trial_result(None, low, {**epoch_result(1, 0.5), "val_metric": 0.4}) == CONTINUE
    assert asha.on_trial_result(None, high, {**epoch_result(1, 0.6), "val_metric": 2.0}) == STOP
    assert asha.stopped == {"high"}


def test_complete_and_remove_reach_the_trials_own_study() -> None:
    spec = _spec()
    done, removed = _trials(spec, 1, "done", "removed")
    other = _trials(spec, 0, "other")[0]
    asha = _scheduler(spec, [done, removed, other])
    asha.on_trial_complete(None, done, epoch_result(1, 0.5))
    asha.on_trial_remove(None, removed)
    long_study = asha._by_study[done.config["meta"].study_key]
    assert long_study._trial_info == {}
    assert set(asha._by_study[other.config["meta"].study_key]._trial_info) == {"other"}
    with pytest.raises(KeyError):  # a trial is never forwarded to another study's scheduler
        asha.on_trial_remove(None, done)


def test_confirm_trials_sharing_the_tuner_are_never_stopped() -> None:
    spec = _spec()
    good, bad = _trials(spec, 0, "good", "bad")
    confirm = FakeTrial.of(spec, confirm_trial(spec, 0, 0), "confirm")
    asha = _scheduler(spec, [good, bad, confirm])
    for epoch in (1, 2):
        assert asha.on_trial_result(None, good, epoch_result(epoch, 0.9)) == CONTINUE
        # far below every tune trial of its study at each rung: a tune trial would be stopped, a confirm trial goes on
        assert asha.on_trial_result(None, confirm, epoch_result(epoch, 0.01)) == CONTINUE
    assert asha.on_trial_result(None, bad, epoch_result(1, 0.01)) == STOP
    asha.on_trial_complete(None, confirm, final_result([]))
    asha.on_trial_remove(None, confirm)
    assert "confirm" not in asha.stopped
