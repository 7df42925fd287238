from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from confirm_plans import ConfirmSearcher
from ray.tune.search import Searcher

from tlsweep.design import plan_tune_trial, recipe_params, studies, study_key
from tlsweep.engine.searchers import PhaseSearcher, TuneSearcher
from tlsweep.spec_load import parse_spec

REPO = Path(__file__).resolve().parents[1]


def _spec(trials: int = 3, sampler: str = "tpe"):
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["design"]["budget"].update(trials_per_cell=trials, sampler=sampler)
    return parse_spec(data)


def _drain(searcher: PhaseSearcher) -> list[dict]:
    configs = []
    n = 0
    while True:
        config = searcher.suggest(f"t{n}")
        if config == Searcher.FINISHED:
            return configs
        configs.append(config)
        result = {"final": True, "status": "ok", "objective": 0.1 + 0.01 * n, "val_metric": 0.1}
        searcher.on_trial_complete(f"t{n}", result)
        n += 1


def test_every_study_gets_exactly_its_budget_with_the_recipe_first() -> None:
    spec = _spec(trials=3)
    configs = _drain(TuneSearcher(spec))
    per_study = Counter(c["meta"].study_key for c in configs)
    assert len(per_study) == len(studies(spec)) and set(per_study.values()) == {3}
    for levels in studies(spec):
        mine = [c["meta"] for c in configs if c["meta"].levels == levels]
        assert sorted(m.tune_index for m in mine) == [0, 1, 2]
        recipe = next(m for m in mine if m.tune_index == 0)
        assert recipe.config_kind == "recipe" and recipe.params == recipe_params(spec, levels)
    # round-robin: the first len(studies) suggestions cover every study once
    assert len({c["meta"].study_key for c in configs[: len(studies(spec))]}) == len(studies(spec))
    # cell by cell with the arms side by side (studies(spec) lists one arm's cells, then the other's)
    first = [(c["meta"].cell_id, c["meta"].arm) for c in configs[: len(studies(spec))]]
    cells = list(dict.fromkeys(cell for cell, _ in first))
    assert first == [(cell, arm) for cell in cells for arm in ("checkpoint", "scratch")]
    assert [levels["init"] for levels in studies(spec)[:2]] == ["checkpoint", "checkpoint"]


def test_each_study_only_learns_from_its_own_trials() -> None:
    spec = _spec(trials=4)
    searcher = TuneSearcher(spec)
    _drain(searcher)
    for study in searcher._studies.values():
        assert len(study.study.trials) == 4


def test_finished_trials_are_replayed_not_rerun() -> None:
    spec = _spec(trials=3)
    done = []
    for levels in studies(spec)[:2]:
        for index in (0, 2):
            planned = plan_tune_trial(spec, levels, index, {"lr": 0.05, "augmentation": "none"})
            done.append(
                {
                    "trial_id": planned.trial_id,
                    "phase": "tune",
                    "tune_index": index,
                    "status": "ok",
                    "objective": 0.3,
                    "params_json": json.dumps({"tuned": planned.params, "levels": levels}),
                }
            )
    searcher = TuneSearcher(spec, done=done)
    assert searcher.remaining() == len(studies(spec)) * 3 - 4
    configs = _drain(searcher)
    for levels in studies(spec)[:2]:
        indices = [c["meta"].tune_index for c in configs if c["meta"].levels == levels]
        assert indices == [1]
    study = searcher._studies[configs[0]["meta"].study_key]
    assert len(study.study.trials) >= 1


def test_grid_sampler_covers_the_grid_exactly() -> None:
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["design"]["tune"] = {
        "augmentation": {"type": "categorical", "choices": ["none", "flip"]},
        "lr": {"type": "categorical", "choices": [0.01, 0.1]},
    }
    data["design"]["budget"].update(trials_per_cell=4, sampler="grid")
    data["design"]["recipe"]["lr"] = 0.01  # the recipe must be a grid point
    spec = parse_spec(data)
    configs = _drain(TuneSearcher(spec))
    levels = studies(spec)[0]
    points = {(c["meta"].params["lr"], c["meta"].params["augmentation"]) for c in configs if c["meta"].levels == levels}
    assert points == {(0.01, "none"), (0.01, "flip"), (0.1, "none"), (0.1, "flip")}


def test_failed_and_pruned_trials_are_told_to_optuna_as_such() -> None:
    from optuna.trial import TrialState

    spec = _spec(trials=3)
    searcher = TuneSearcher(spec)
    a, b = searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("b", {"epoch": 1, "val_metric": 0.2})  # stopped early: no final result
    states = {t.state for s in searcher._studies.values() for t in s.study.trials}
    assert states == {TrialState.FAIL, TrialState.PRUNED}
    assert a["trial"].seed == b["trial"].seed  # tune index 0 of two studies share the replicate seed


def test_a_trial_lost_with_its_node_is_handed_out_again_unchanged() -> None:
    spec = _spec(trials=2)
    searcher = TuneSearcher(spec)
    total = searcher.remaining()
    first = [searcher.suggest(f"t{n}") for n in range(total)]
    # everything is handed out, but trials still run: Tune must keep asking (a lost one may come back)
    assert searcher.suggest("waiting") is None
    lost = first[3]
    searcher.on_trial_complete("t3", None, error=True)
    searcher.requeue(lost["meta"])
    again = searcher.suggest("t3-again")
    assert again["meta"] == lost["meta"] and again["trial"] == lost["trial"]  # same plan, same id, same seed
    for n in [*(n for n in range(total) if n != 3), "3-again"]:
        searcher.on_trial_complete(f"t{n}", {"final": True, "status": "ok", "objective": 0.2, "val_metric": 0.2})
    assert searcher.suggest("late") == Searcher.FINISHED
    study = searcher._studies[lost["meta"].study_key]
    assert len(study.study.trials) == 3  # the lost attempt (FAIL) and its rerun; the budget is not charged twice


def test_a_confirm_trial_lost_with_its_node_is_handed_out_again() -> None:
    spec = _spec(trials=2)
    levels = studies(spec)[0]
    fixed = [plan_tune_trial(spec, levels, i, {"lr": 0.05, "augmentation": "none"}) for i in range(2)]
    searcher = ConfirmSearcher(spec, planned=fixed)
    a = searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", None, error=True)
    searcher.requeue(a["meta"])
    assert searcher.suggest("a2")["meta"].trial_id == fixed[0].trial_id
    searcher.on_trial_complete("a2", {"final": True, "objective": 0.2})
    assert searcher.suggest("c") is None  # "b" still runs
    searcher.on_trial_complete("b", {"final": True, "objective": 0.2})
    assert searcher.suggest("c") == Searcher.FINISHED


def test_an_epoch_reported_again_by_a_retry_reaches_optuna_once(recwarn) -> None:
    spec = _spec(trials=2)
    searcher = TuneSearcher(spec)
    searcher.suggest("a")
    for epoch, value in [(1, 0.2), (2, 0.3), (2, 0.35), (3, 0.4)]:  # retried from the epoch-1 checkpoint
        searcher.on_trial_result("a", {"epoch": epoch, "val_metric": value})
    trial = next(t for s in searcher._studies.values() for t in s.study.trials)
    assert trial.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.4}
    assert not [w for w in recwarn if "already reported" in str(w.message)]


def test_optuna_learns_the_validation_objective_never_a_test_metric() -> None:
    from optuna.trial import TrialState

    spec = _spec(trials=3)
    searcher = TuneSearcher(spec)
    assert searcher.set_search_properties("anything", "min", {})  # Tune's metric/mode never override the spec's
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", {"final": True, "objective": 0.30, "val_metric": 0.30, "test_acc": 0.10})
    searcher.on_trial_complete("b", {"final": True, "objective": 0.20, "val_metric": 0.20, "test_acc": 0.99})
    told = sorted((t.value for s in searcher._studies.values() for t in s.study.trials), reverse=True)
    assert told == [0.30, 0.20]
    searcher.suggest("c")
    searcher.on_trial_complete("c", {"final": True, "objective": float("nan"), "test_acc": 0.9})
    states = [t.state for s in searcher._studies.values() for t in s.study.trials]
    assert states.count(TrialState.FAIL) == 1  # a NaN objective is no value to learn from


def test_replayed_trials_reach_their_study_with_their_outcome() -> None:
    from optuna.trial import TrialState

    spec = _spec(trials=6)
    levels = studies(spec)[1]
    outcomes = [("ok", 0.4), ("diverged", 0.125), ("pruned", 0.2), ("failed", None), ("ok", float("nan"))]
    done = []
    for index, (status, objective) in enumerate(outcomes):
        planned = plan_tune_trial(spec, levels, index, {"lr": 0.01 * (index + 1), "augmentation": "none"})
        done.append(
            {
                "trial_id": planned.trial_id,
                "phase": "tune",
                "tune_index": index,
                "status": status,
                "objective": objective,
                "params_json": json.dumps({"tuned": planned.params, "levels": levels}),
            }
        )
    confirm_row = {**done[0], "phase": "confirm", "tune_index": None, "trial_id": "confirm-row"}
    searcher = TuneSearcher(spec, done=[*done, confirm_row])
    study = searcher._studies[study_key(levels)]
    assert [(t.state, t.value) for t in study.study.trials] == [
        (TrialState.COMPLETE, 0.4),
        (TrialState.COMPLETE, 0.125),  # diverged is an outcome, scored at chance
        (TrialState.PRUNED, None),
        (TrialState.FAIL, None),
        (TrialState.FAIL, None),
    ]
    assert [t.params["lr"] for t in study.study.trials] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert study.free_indices == [5]
    assert searcher.remaining() == len(studies(spec)) * 6 - 5  # the confirm row is not a tune trial


def test_trials_a_dead_driver_left_running_are_handed_out_first_and_unchanged() -> None:
    spec = _spec(trials=3)
    first, second = studies(spec)[:2]
    pending = plan_tune_trial(spec, first, 2, {"lr": 0.07, "augmentation": "none"})
    already_done = plan_tune_trial(spec, second, 1, {"lr": 0.05, "augmentation": "flip"})
    done = [
        {
            "trial_id": already_done.trial_id,
            "phase": "tune",
            "tune_index": 1,
            "status": "ok",
            "objective": 0.3,
            "params_json": json.dumps({"tuned": already_done.params, "levels": second}),
        }
    ]
    searcher = TuneSearcher(spec, done=done, pending=[pending, already_done])  # a recorded one is not rerun
    assert searcher.remaining() == len(studies(spec)) * 3 - 1
    config = searcher.suggest("t0")
    assert config["meta"] == pending  # same index, params and seed: the same id, so its checkpoint is found
    configs = [config, *_drain(searcher)]
    mine = sorted(c["meta"].tune_index for c in configs if c["meta"].levels == first)
    assert mine == [0, 1, 2]
    assert sorted(c["meta"].tune_index for c in configs if c["meta"].levels == second) == [0, 2]


def test_confirm_hands_out_the_fixed_plan_in_order_without_recorded_trials() -> None:
    spec = _spec(trials=2)
    levels = studies(spec)[0]
    fixed = [plan_tune_trial(spec, levels, i, {"lr": 0.01 * (i + 1), "augmentation": "none"}) for i in range(3)]
    searcher = ConfirmSearcher(spec, planned=fixed, done=[{"trial_id": fixed[1].trial_id}])
    assert searcher.phase == "confirm" and searcher.planned == fixed and searcher.remaining() == 2
    configs = _drain(searcher)
    assert [c["meta"].trial_id for c in configs] == [fixed[0].trial_id, fixed[2].trial_id]
    assert [c["trial"].seed for c in configs] == [fixed[0].seed, fixed[2].seed]
    assert [c["trial"].lr for c in configs] == [0.01, 0.03]
    assert {c["objective_metric"] for c in configs} == {"val_acc"}
    assert searcher.remaining() == 0 and searcher.suggest("more") == Searcher.FINISHED


def test_the_searcher_continues_from_tunes_snapshot(tmp_path: Path) -> None:
    spec = _spec(trials=2)
    searcher = TuneSearcher(spec)
    handed = [searcher.suggest(f"t{n}") for n in range(3)]
    searcher.on_trial_complete("t0", {"final": True, "objective": 0.2, "val_metric": 0.2})
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = TuneSearcher(spec)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.remaining() == searcher.remaining() == len(studies(spec)) * 2 - 3
    assert set(restored._live) == {"t1", "t2"}
    assert restored.suggest("t3")["meta"] == searcher.suggest("t3")["meta"]
    assert handed[0]["meta"].config_kind == "recipe"
