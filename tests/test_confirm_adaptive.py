"""Adaptive confirm seeds in the engine's planning (``tlsweep.design.plan_confirm_step``), with fake trials: no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from confirm_plans import plan_confirm

from tlsweep.design import confirm_outcome, plan_confirm_step, plan_tune_trial, studies, trial_counts
from tlsweep.errors import SpecError
from tlsweep.spec_load import parse_spec

REPO = Path(__file__).resolve().parents[1]


def _spec(adaptive=None, seeds=4, **hypothesis):
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["design"]["factors"]["train_fraction"] = [0.1, 0.3]  # the simulated noise is seeded by the cell ids
    data["confirm"] = {"seeds": seeds, "configs": ["best"], "seed_base": 1000, "adaptive": adaptive}
    data.setdefault("hypothesis", {}).update({"equivalence_margin": 0.02, **hypothesis})
    return parse_spec(data)


def _tune_rows(spec):
    rows = []
    for levels in studies(spec):
        for i in range(spec.design.budget.trials_per_cell):
            planned = plan_tune_trial(spec, levels, i, {"lr": 0.01 * (i + 1), "augmentation": "none"})
            rows.append(
                {
                    "trial_id": planned.trial_id,
                    "phase": "tune",
                    "tune_index": i,
                    "status": "ok",
                    "objective": 0.1 * i,
                    "params_json": json.dumps({"tuned": planned.params, "levels": levels}),
                }
            )
    return rows


def _effects(spec):
    """A large advantage in the first cell, none (tiny noise) in the second, a small one with noise elsewhere."""
    cells = list(dict.fromkeys(p.cell_id for p in plan_confirm(spec, _tune_rows(spec))[0]))
    return {cells[0]: (0.20, 0.01), cells[1]: (0.0, 0.002), **{c: (0.01, 0.03) for c in cells[2:]}}


def _run(trial, effects):
    """A fake confirm trial: test accuracy from (cell, arm, seed) alone, as a deterministic training run would."""
    mean, sd = effects[trial.cell_id]
    noise = np.random.default_rng([trial.seed, sum(map(ord, trial.cell_id))]).normal(0, sd)
    acc = 0.5 + (mean + noise if trial.arm == "checkpoint" else 0.0)
    return {
        "trial_id": trial.trial_id,
        "phase": "confirm",
        "cell_id": trial.cell_id,
        "arm": trial.arm,
        "config_kind": trial.config_kind,
        "replicate": trial.replicate,
        "seed": trial.seed,
        "status": "ok",
        "test_acc": acc,
        "chance": 0.125,
    }


def _sweep(spec, *, stop_after=None):
    """The driver's loop: hand out the step's trials, record them, ask again; ``stop_after`` trials then 'crash'."""
    rows, effects, steps = _tune_rows(spec), _effects(spec), []
    ran = 0
    while True:
        step = plan_confirm_step(spec, rows)
        steps.append(step)
        recorded = {r["trial_id"] for r in rows}
        for trial in step.trials:
            if trial.trial_id in recorded:
                continue
            if stop_after is not None and ran == stop_after:
                return rows, steps, False
            rows.append(_run(trial, effects))
            ran += 1
        if not step.more:
            return rows, steps, True


def test_spec_validation_and_resolved_spec():
    spec = _spec({"max_seeds": 16, "batch": 2})
    assert spec.confirm.looks() == (4, 6, 8, 10, 12, 14, 16)
    assert trial_counts(spec)["confirm"] == len(studies(spec)) * 16
    plain = _spec()
    assert "adaptive" not in plain.resolved()["confirm"]  # results of older versions keep their hash
    assert spec.resolved()["confirm"]["adaptive"]["max_seeds"] == 16
    with pytest.raises(SpecError, match=r"confirm.*max_seeds"):
        _spec({"max_seeds": 4, "batch": 2})
    with pytest.raises(SpecError, match=r"hypothesis\.correction"):
        _spec({"max_seeds": 16, "batch": 2}, correction="bh")


def test_without_adaptive_the_step_is_the_whole_fixed_plan():
    spec = _spec(seeds=5)
    step = plan_confirm_step(spec, _tune_rows(spec))
    assert not step.more and step.looks == (5,)
    assert [t.trial_id for t in step.trials] == [t.trial_id for t in plan_confirm(spec, _tune_rows(spec))[0]]


def test_settled_cells_stop_and_open_cells_get_more_seeds():
    spec = _spec({"max_seeds": 16, "batch": 4}, seeds=8)
    rows, steps, finished = _sweep(spec)
    assert finished and steps[0].look == 1 and len(steps[0].trials) == len(studies(spec)) * 8
    confirm = [r for r in rows if r["phase"] == "confirm"]
    per_cell = {}
    for r in confirm:
        per_cell.setdefault(r["cell_id"], set()).add(r["replicate"])
    cells = list(_effects(spec))
    # the large advantage and the exact catch-up are settled at the first look; the rest get another batch
    assert per_cell[cells[0]] == set(range(8)) and per_cell[cells[1]] == set(range(8))
    assert all(per_cell[c] in (set(range(12)), set(range(16))) for c in cells[2:])
    assert {r["seed"] for r in confirm} == {1000 + i for i in range(max(map(len, per_cell.values())))}
    assert len(confirm) < trial_counts(spec)["confirm"]
    names, outcome = confirm_outcome(spec, confirm, looks_done=steps[-1].look)
    labels = dict(zip(names, outcome.label.tolist(), strict=True))
    assert labels[cells[0]] == "supported" and labels[cells[1]] == "equivalent"
    # both arms of a cell get each seed (paired)
    arms = {}
    for r in confirm:
        arms.setdefault((r["cell_id"], r["seed"]), set()).add(r["arm"])
    assert all(a == {"checkpoint", "scratch"} for a in arms.values())


@pytest.mark.parametrize("stop_after", [3, 37, 50])
def test_a_resumed_sweep_takes_the_same_batches_and_seeds(stop_after):
    spec = _spec({"max_seeds": 16, "batch": 4}, seeds=8)
    whole, _, _ = _sweep(spec)
    partial, _, finished = _sweep(spec, stop_after=stop_after)
    assert not finished
    # the resumed driver starts from the recorded rows only (in another order, as a Parquet file may give them)
    resumed_rows = list(reversed(partial))
    effects = _effects(spec)
    while True:
        step = plan_confirm_step(spec, resumed_rows)
        done = {r["trial_id"] for r in resumed_rows}
        resumed_rows += [_run(t, effects) for t in step.trials if t.trial_id not in done]
        if not step.more:
            break
    assert sorted(r["trial_id"] for r in resumed_rows) == sorted(r["trial_id"] for r in whole)


def test_the_confirm_searcher_hands_out_only_what_is_not_recorded():
    from confirm_plans import ConfirmSearcher

    spec = _spec({"max_seeds": 16, "batch": 4}, seeds=8)
    rows, _, _ = _sweep(spec, stop_after=10)
    step = plan_confirm_step(spec, rows)
    searcher = ConfirmSearcher(spec, planned=step.trials, done=rows)
    assert searcher.remaining() == len(step.trials) - 10


def test_the_report_of_an_adaptive_sweep_uses_the_sequential_decisions(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from report_fixtures import simulate_results, spec_dict

    from tlsweep.report import build_report

    data = spec_dict(tmp_path / "r", seeds=4, configs=("best",))
    data["confirm"]["adaptive"] = {"max_seeds": 12, "batch": 4}
    spec = parse_spec(data)
    root = simulate_results(tmp_path / "r", spec=spec)
    report = build_report(str(root))
    text = report.markdown_path.read_text()
    assert "group-sequential" in text and "Adaptive confirm seeds" in text
    from tlsweep.results.location import resolve_location
    from tlsweep.results.store import ResultsStore

    trials = ResultsStore(resolve_location(str(root))).read_trials().to_pylist()
    assert max(r["replicate"] for r in trials if r["phase"] == "confirm") == 3  # the first look's seeds were run
    names, outcome = confirm_outcome(spec, [r for r in trials if r["phase"] == "confirm"], looks_done=1)
    expected = dict(zip(names, outcome.label.tolist(), strict=True))
    assert all("look 1 (4 seeds)" in v.sentence for v in report.cell_verdicts.values())
    from tlsweep.design import cell_id

    def canonical(name):  # the fixture spells levels as 1.0, the engine as 1
        return cell_id({k: float(v) for k, v in (part.split("=") for part in name.split("|"))})

    assert {canonical(c): v.label for c, v in report.cell_verdicts.items()} == {
        canonical(c): {"not supported": "not supported (reversed)", "equivalent": "equivalent (caught up)"}.get(
            lbl, lbl
        )
        for c, lbl in expected.items()
    }


def _drive(spec, *, slots=3, done=None, duration=None, record_walls=False):
    """Tune's loop around a ``SweepSearcher`` with ``slots`` concurrent trials, each lasting ``duration(planned)``
    (default: its cell's epochs); every finished trial is recorded before the next suggestion (as the recorder
    callback does), with its end time as ``end`` and, with ``record_walls``, its length as ``wall_time_s``.
    Returns (rows, the trials in the order they finished, the searcher)."""
    from ray.tune.search import Searcher

    from tlsweep.engine.searchers import SweepSearcher

    rows, order, effects = list(done or []), [], _effects(spec)
    searcher = SweepSearcher(spec, rows=lambda: list(rows), done=list(rows))
    live: list = []  # (end time, Ray id, planned)
    n, now = 0, 0.0
    while True:
        finished = False
        while len(live) < slots:
            config = searcher.suggest(f"t{n}")
            if config == Searcher.FINISHED:
                finished = True
                break
            if config is None:
                break
            planned = config["meta"]
            length = duration(planned) if duration else planned.levels["epochs"]
            live.append((now + length + n * 1e-6, f"t{n}", planned, length))
            n += 1
        if finished or not live:
            assert not live
            return rows, order, searcher
        live.sort(key=lambda item: item[0])
        now, ray_id, planned, length = live.pop(0)
        if planned.phase == "tune":
            row = {
                "trial_id": planned.trial_id,
                "phase": "tune",
                "tune_index": planned.tune_index,
                "status": "ok",
                "objective": 0.1 * int(planned.tune_index),
                "params_json": json.dumps({"tuned": planned.params, "levels": planned.levels}),
            }
            result = {"final": True, "status": "ok", "objective": row["objective"], "val_metric": 0.1}
        else:
            row, result = _run(planned, effects), {"final": True, "status": "ok", "objective": 0.5}
        row["end"] = now
        if record_walls:
            row["wall_time_s"] = length
        searcher.on_trial_complete(ray_id, result)
        rows.append(row)
        order.append(planned)


@pytest.mark.parametrize("adaptive", [None, {"max_seeds": 12, "batch": 4}])
def test_one_searcher_runs_both_phases_and_starts_each_study_s_confirm_trials_early(adaptive):
    spec = _spec(adaptive, seeds=4)
    rows, order, searcher = _drive(spec)
    # exactly the trials of the two-phase plan: every tune budget, then every confirm look the rows lead to
    final = plan_confirm_step(spec, rows)
    assert not final.more
    confirm_ids = sorted(p.trial_id for p in order if p.phase == "confirm")
    assert confirm_ids == sorted(t.trial_id for t in final.trials)
    assert len(confirm_ids) == len(set(confirm_ids))
    tune = [p for p in order if p.phase == "tune"]
    assert len(tune) == len(studies(spec)) * spec.design.budget.trials_per_cell
    # no idle slot at the phase boundary: some confirm trial finished before the last tune trial did
    first_confirm = next(i for i, p in enumerate(order) if p.phase == "confirm")
    last_tune = max(i for i, p in enumerate(order) if p.phase == "tune")
    assert first_confirm < last_tune
    # and each confirm trial started only after its own study's whole tune budget was recorded
    for i, planned in enumerate(order):
        if planned.phase == "confirm":
            own = [p for p in order[:i] if p.phase == "tune" and p.study_key == planned.study_key]
            assert len(own) == spec.design.budget.trials_per_cell
    assert searcher.step is not None and not searcher.step.more


def test_confirm_trials_go_longest_first_so_short_ones_fill_the_last_slots():
    spec = _spec(None, seeds=4)  # 8 studies: train fraction 0.1/0.3 x epochs 2/5 x checkpoint/scratch

    def duration(planned):  # scratch trains the whole network: three times the frozen arm's time
        return planned.levels["epochs"] * planned.levels["train_fraction"] * (3 if planned.arm == "scratch" else 1)

    timed, order, _ = _drive(spec, slots=2, duration=duration, record_walls=True)
    untimed, _, _ = _drive(spec, slots=2, duration=duration)  # no lengths recorded: the plan's order
    assert max(r["end"] for r in timed) < max(r["end"] for r in untimed)
    # confirm trials start in order of their study's length, as far as their studies were tuned by then
    confirm = [p for p in order if p.phase == "confirm"]
    assert duration(confirm[-1]) == min(duration(p) for p in confirm)
    # the two slots end within one short trial of each other: no slot idles while a long trial runs alone
    assert max(r["end"] for r in timed) <= sum(duration(p) for p in order) / 2 + duration(confirm[-1]) + 1e-3
    # the same trials as without lengths: only the order changed
    assert sorted(p.trial_id for p in confirm) == sorted(r["trial_id"] for r in untimed if r["phase"] == "confirm")


def test_a_resumed_sweep_searcher_hands_out_only_what_is_not_recorded():
    spec = _spec({"max_seeds": 12, "batch": 4}, seeds=4)
    whole, _, _ = _drive(spec)
    recorded = whole[: len(whole) * 2 // 3]  # a driver died after two thirds of the trials were recorded
    rows, resumed, _ = _drive(spec, done=list(reversed(recorded)))
    assert not {p.trial_id for p in resumed} & {r["trial_id"] for r in recorded}
    assert sorted(r["trial_id"] for r in rows) == sorted(r["trial_id"] for r in whole)


def _spec_with_pairs(compare, **hypothesis):
    data = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    data["design"]["factors"]["train_fraction"] = [0.1, 0.3]
    data["confirm"] = {"seeds": 4, "configs": ["best"], "seed_base": 1000, "adaptive": {"max_seeds": 12, "batch": 4}}
    data["hypothesis"].update({"equivalence_margin": 0.02, "compare": compare, **hypothesis})
    return parse_spec(data)


@pytest.mark.parametrize(
    "compare,hypothesis",
    [
        ([{"treated": "checkpoint", "baseline": "scratch", "direction": "less"}], {}),
        ({"control": "scratch", "direction": "less"}, {}),
        ({"init": ["checkpoint", "scratch"]}, {"direction": "less"}),
    ],
)
def test_the_adaptive_path_uses_the_comparison_s_own_direction(compare, hypothesis):
    """checkpoint is far below scratch by construction (as a 'less' claim would have it): every way of saying
    `direction: less` decides 'supported' in the adaptive path, as the fixed design does."""
    spec = _spec_with_pairs(compare, **hypothesis)
    assert spec.compared_arms[0].direction == "less"
    rows = _tune_rows(spec)
    while True:
        step = plan_confirm_step(spec, rows)
        done = {r["trial_id"] for r in rows}
        for trial in step.trials:
            if trial.trial_id in done:
                continue
            row = _run(trial, {trial.cell_id: (0.0, 0.0)})
            noise = np.random.default_rng([trial.seed, 7, trial.arm == "checkpoint"]).normal(0, 0.02)
            row["test_acc"] = (0.14 if trial.arm == "checkpoint" else 0.35) + noise
            rows.append(row)
        if not step.more:
            break
    names, outcome = confirm_outcome(spec, [r for r in rows if r["phase"] == "confirm"], looks_done=step.look)
    assert set(outcome.label.tolist()) == {"supported"}, dict(zip(names, outcome.label.tolist(), strict=True))


def test_a_look_with_a_hole_is_not_evaluated():
    """A report rendered while look 2 runs evaluates look 1 only: look 2's boundary belongs to its full information."""
    from tlsweep.report.analysis import complete_looks

    spec = _spec({"max_seeds": 16, "batch": 4}, seeds=8)
    rows, steps, _ = _sweep(spec)
    confirm = [r for r in rows if r["phase"] == "confirm"]
    assert complete_looks(spec, confirm) == steps[-1].look
    second = [r for r in confirm if 8 <= r["replicate"] < 12]
    assert second, "the fixture's open cells get a second look"
    holed = [r for r in confirm if r is not second[0]]
    assert complete_looks(spec, holed) == 1
    assert complete_looks(spec, [r for r in confirm if r["replicate"] != 0]) == 0
