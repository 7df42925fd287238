from __future__ import annotations

import json
from pathlib import Path

import yaml
from confirm_plans import confirm_seeds, plan_confirm

from tlsweep.design import (
    cell_id,
    expected_trial_seconds,
    plan_tune_trial,
    select_best,
    studies,
    trial_config,
    trial_counts,
    trial_id,
    tune_seed,
)
from tlsweep.spec_load import parse_spec

REPO = Path(__file__).resolve().parents[1]


def _spec(**design):
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["design"].update(design)
    return parse_spec(data)


def test_cell_id_excludes_init_and_ignores_mapping_order() -> None:
    a = cell_id({"init": "scratch", "train_fraction": 0.1, "epochs": 2})
    b = cell_id({"epochs": 2, "init": "checkpoint", "train_fraction": 0.1})
    assert a == b == "train_fraction=0.1|epochs=2"
    assert cell_id({"init": "scratch"}) == "all"


def test_trial_ids_are_content_hashes() -> None:
    base = trial_id("tune", "c", "scratch", "tune-1", {"lr": 0.1}, 7)
    assert base == trial_id("tune", "c", "scratch", "tune-1", {"lr": 0.1}, 7)
    assert (
        len(
            {
                base,
                trial_id("tune", "c", "scratch", "tune-1", {"lr": 0.1}, 8),
                trial_id("tune", "c", "checkpoint", "tune-1", {"lr": 0.1}, 7),
                trial_id("tune", "c", "scratch", "tune-1", {"lr": 0.2}, 7),
            }
        )
        == 4
    )


def test_seeds_are_shared_across_arms_and_fresh_in_confirm() -> None:
    spec = _spec()
    seeds = {plan_tune_trial(spec, levels, 2, {"lr": 0.1, "augmentation": "none"}).seed for levels in studies(spec)}
    assert seeds == {tune_seed(spec, 2)}
    tune_seeds = {tune_seed(spec, i) for i in range(spec.design.budget.trials_per_cell)}
    assert not tune_seeds & set(confirm_seeds(spec)) and len(confirm_seeds(spec)) == spec.confirm.seeds


def test_trial_config_layers_model_recipe_factors_and_tuned_values() -> None:
    spec = _spec(recipe={"lr": 0.01, "augmentation": "flip"})
    levels = {"init": "checkpoint", "train_fraction": 0.1, "epochs": 6}
    config = trial_config(spec, levels, {"lr": 0.2}, seed=5)
    assert (config.lr, config.augmentation, config.epochs, config.train_fraction, config.seed) == (
        0.2,
        "flip",
        6,
        0.1,
        5,
    )
    # parse_spec keeps the path as the shipped spec writes it (load_spec resolves it beside the spec file)
    assert config.init == "checkpoint:../data/resnet_tiny-source-16px.pt" and config.batch_size == 16
    scratch = trial_config(spec, {**levels, "init": "scratch"}, {"lr": 0.2, "freeze_depth": 3}, seed=5)
    assert scratch.init == "scratch" and scratch.freeze_depth == 0


def _row(spec, levels, index, status, objective):
    planned = plan_tune_trial(spec, levels, index, {"lr": 0.01 * (index + 1), "augmentation": "none"})
    return {
        "trial_id": planned.trial_id,
        "phase": "tune",
        "tune_index": index,
        "status": status,
        "objective": objective,
        "params_json": json.dumps({"tuned": planned.params, "levels": levels}),
    }


def test_select_best_uses_validation_ignores_pruned_and_failed_and_prefers_the_recipe_on_ties() -> None:
    spec = _spec()
    levels = studies(spec)[0]
    rows = [
        _row(spec, levels, 0, "ok", 0.5),
        _row(spec, levels, 1, "pruned", 0.9),
        _row(spec, levels, 2, "failed", None),
        _row(spec, levels, 3, "ok", 0.5),
    ]
    assert select_best(spec, rows)["tune_index"] == 0
    rows.append(_row(spec, levels, 4, "ok", 0.6))
    assert select_best(spec, rows)["tune_index"] == 4
    assert select_best(spec, [_row(spec, levels, 0, "failed", None)]) is None


def test_plan_confirm_reruns_each_studys_best_with_every_seed() -> None:
    spec = _spec()
    rows = [_row(spec, levels, i, "ok", 0.1 * i) for levels in studies(spec) for i in range(4)]
    planned, skipped = plan_confirm(spec, rows)
    assert not skipped and len(planned) == trial_counts(spec)["confirm"]
    assert len({p.trial_id for p in planned}) == len(planned)
    assert {p.params["lr"] for p in planned} == {0.04}  # tune index 3 won everywhere
    by_seed = {}
    for p in planned:
        by_seed.setdefault((p.cell_id, p.seed), set()).add(p.arm)
    assert all(arms == {"checkpoint", "scratch"} for arms in by_seed.values())  # paired
    failed_study = [dict(r, status="failed", objective=None) if i < 4 else r for i, r in enumerate(rows)]
    planned, skipped = plan_confirm(spec, failed_study)
    assert len(skipped) == 1 and len(planned) == trial_counts(spec)["confirm"] - spec.confirm.seeds


def test_a_studys_expected_trial_length_is_the_median_of_its_tune_trials_that_ran_to_the_end() -> None:
    small = {"init": "scratch", "train_fraction": 0.1, "epochs": 2}
    large = {"init": "scratch", "train_fraction": 1.0, "epochs": 5}

    def row(levels, wall, status="ok", phase="tune"):
        return {"phase": phase, "status": status, "wall_time_s": wall, "params_json": json.dumps({"levels": levels})}

    rows = [
        row(small, 1.0),
        row(small, 9.0),
        row(small, 2.0),
        row(small, 0.1, "pruned"),
        row(small, None, "failed"),
        row(large, 30.0),
        row(large, 100.0, phase="confirm"),
        row(large, float("nan")),
    ]
    expected = expected_trial_seconds(rows)
    assert expected == {"train_fraction=0.1|epochs=2|init=scratch": 2.0, "train_fraction=1|epochs=5|init=scratch": 30.0}
