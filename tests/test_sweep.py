"""Tiny sweeps on a private local Ray instance: the engine end to end."""

from __future__ import annotations

import json
import logging
import subprocess
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from confirm_plans import plan_confirm
from faults import INJECTED, TrialFault, injected
from sweep_fixtures import assert_journal_matches_parquet, tiny_spec_dict

from tlsweep.data.loading import load_dataset
from tlsweep.design import trial_counts
from tlsweep.engine.sweep_environment import RESULT_FILES_LOGGER, sweep_settings
from tlsweep.errors import StoreError
from tlsweep.results.schema import EPOCHS_SCHEMA, TRIALS_SCHEMA
from tlsweep.results.store import ResultsStore
from tlsweep.spec_load import load_spec, parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the shared sweep takes ~30 s


def _run(spec, **kwargs):
    from tlsweep.engine.run import run_sweep

    return run_sweep(spec, live=False, report=kwargs.pop("report", False), **kwargs)


@pytest.fixture(scope="module")
def finished_sweep(ray_local, tiny_assets, tmp_path_factory):
    """One tiny sweep with an injected infrastructure fault and a diverging recipe, run to the end."""
    storage = tmp_path_factory.mktemp("runs")
    data = tiny_spec_dict(tiny_assets, storage)
    # the recipe lr diverges: tune index 0 of every study is an outcome "diverged", not a crash
    data["design"]["tune"]["lr"]["high"] = 1.0e6
    data["design"]["recipe"]["lr"] = 1.0e5
    data["checkpoints"] = {"keep": "all"}  # every finished trial's final checkpoint stays (the confirm trials diverge)
    spec = parse_spec(data)
    tune_log = logging.getLogger(RESULT_FILES_LOGGER)
    seen = _Messages()
    tune_log.addHandler(seen)  # sees only what passes the logger's filters
    try:
        with injected(TrialFault({"phase": "confirm", "replicate": 1, "arm": "scratch"})):
            outcome = _run(spec)
    finally:
        tune_log.removeHandler(seen)
    TUNE_MESSAGES[:] = seen.messages
    return spec, storage / "tiny", outcome


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


TUNE_MESSAGES: list[str] = []  # what Tune's experiment analysis logged during finished_sweep


def test_trial_counts_match_the_design_and_budgets_are_equal(finished_sweep) -> None:
    spec, results, outcome = finished_sweep
    trials = pq.read_table(results / "trials.parquet").to_pylist()
    assert not outcome.interrupted
    # the run's slot efficiency, in the outcome and in status.json (until a later run of the sweep rewrites it)
    assert 0 < outcome.efficiency <= 1 and outcome.trials_span_s < outcome.tuner_wall_s
    assert outcome.efficiency == pytest.approx(outcome.busy_s / (outcome.slots * outcome.trials_span_s))
    figures = json.loads((results / "status.json").read_text())
    assert figures["efficiency"] == round(outcome.efficiency, 4) and figures["slots"] == outcome.slots
    tune = [r for r in trials if r["phase"] == "tune"]
    confirm = [r for r in trials if r["phase"] == "confirm"]
    assert len(tune) == trial_counts(spec)["tune"] and len(confirm) == trial_counts(spec)["confirm"]
    per_study = Counter((r["cell_id"], r["arm"]) for r in tune)
    assert set(per_study.values()) == {spec.design.budget.trials_per_cell}
    assert len({r["trial_id"] for r in trials}) == len(trials)


def test_parquet_files_have_the_declared_schema_and_metadata(finished_sweep) -> None:
    spec, results, _ = finished_sweep
    trials = pq.read_table(results / "trials.parquet")
    epochs = pq.read_table(results / "epochs.parquet")
    assert trials.schema.remove_metadata() == TRIALS_SCHEMA
    assert epochs.schema.remove_metadata() == EPOCHS_SCHEMA
    meta = {k.decode(): v.decode() for k, v in trials.schema.metadata.items()}
    assert meta["spec_hash"] == spec.result_hash() and "version.torch" in meta and "version.ray" in meta
    resolved = yaml.safe_load((results / "spec.resolved.yaml").read_text())
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["spec_hash"] == spec.result_hash() and resolved["name"] == "tiny"
    assert "tlsweep" not in resolved and load_spec(results / "spec.resolved.yaml") == spec  # itself a valid spec
    assert provenance["compared_arms"] == [list(c.pair) for c in spec.compared_arms] and provenance[
        "trial_counts"
    ] == trial_counts(spec)
    assert provenance["class_names"] == load_dataset(spec.dataset, image_size=spec.model.image_size).class_names
    ok = [r for r in trials.to_pylist() if r["status"] == "ok"]
    rows_per_trial = Counter(r["trial_id"] for r in epochs.to_pylist())
    assert all(rows_per_trial[r["trial_id"]] == r["epochs_run"] for r in ok)


def test_ray_keeps_checkpoints_but_no_second_copy_of_the_results(finished_sweep) -> None:
    _, results, _ = finished_sweep
    files = [p.name for p in (results / "ray").rglob("*") if p.is_file()]
    assert "state.pt" in files
    # checkpoints.keep all: the final checkpoint of every trial that finished an epoch (a diverged one never does)
    states = sorted((results / "ray").rglob("state.pt"))
    rows = pq.read_table(results / "trials.parquet").to_pylist()
    assert len(states) == len({p.parent.parent for p in states})  # one per trial
    assert {p.parent.parent.name for p in states} == {
        f"{r['phase']}-{r['trial_id']}" for r in rows if r["status"] == "ok"
    }
    from tlsweep.training.predict import load_trained_model

    kept = load_trained_model(states[0])  # what `tlsweep predict --checkpoint` reads
    assert kept.arch == "resnet_tiny" and len(kept.class_names) == 8 and kept.image_size == 16
    assert not [f for f in files if f in ("result.json", "progress.csv") or f.startswith("events.out")]
    # and Tune's end-of-fit complaint that they are missing is not shown while a sweep runs, its other warnings are
    assert not [m for m in TUNE_MESSAGES if m.startswith("Failed to fetch metrics")]
    tune_log = logging.getLogger(RESULT_FILES_LOGGER)
    record = tune_log.makeRecord(tune_log.name, logging.WARNING, __file__, 1, "%s", ("x",), None)
    complaint = tune_log.makeRecord(
        tune_log.name,
        logging.WARNING,
        __file__,
        1,
        "%s",
        ("Failed to fetch metrics for 24 trial(s):\n- sweep_trainable_1: FileNotFoundError()",),
        None,
    )
    with sweep_settings():  # what run_sweep runs under
        assert tune_log.filter(record)
        assert not tune_log.filter(complaint)
    assert tune_log.filter(complaint)  # and nothing of it is left once run_sweep returned


def test_same_seed_gives_the_same_subset_in_every_arm(finished_sweep) -> None:
    _, results, _ = finished_sweep
    rows = [r for r in pq.read_table(results / "trials.parquet").to_pylist() if r["subset_hash"]]
    by_key: dict = {}
    for r in rows:
        by_key.setdefault((r["cell_id"], r["seed"]), set()).add(r["subset_hash"])
    assert by_key and all(len(hashes) == 1 for hashes in by_key.values())
    fractions = {r["train_fraction"]: r["n_train"] for r in rows}
    assert fractions[0.5] < fractions[1.0]


def test_diverging_lr_is_an_outcome_and_failures_are_retried_then_recorded(finished_sweep) -> None:
    _, results, _ = finished_sweep
    rows = pq.read_table(results / "trials.parquet").to_pylist()
    recipe = [r for r in rows if r["phase"] == "tune" and r["tune_index"] == 0]
    assert {r["status"] for r in recipe} == {"diverged"}
    assert all(r["best_val_acc"] == pytest.approx(r["chance"]) for r in recipe)
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["phase"] == "confirm" and r["arm"] == "scratch" and r["replicate"] == 1 for r in failed)
    assert all(r["attempts"] == 2 and INJECTED in (r["error"] or "") for r in failed), [
        (r["attempts"], r["error"]) for r in failed
    ]
    assert all(r["test_acc"] is not None for r in rows if r["phase"] == "confirm" and r["status"] == "ok")
    assert all(r["test_acc"] is None for r in rows if r["phase"] == "tune")


def test_confirm_phase_reruns_the_selected_configs_with_fresh_paired_seeds(finished_sweep) -> None:
    spec, results, _ = finished_sweep
    rows = pq.read_table(results / "trials.parquet").to_pylist()
    expected, skipped = plan_confirm(spec, [r for r in rows if r["phase"] == "tune"])
    assert not skipped
    assert {p.trial_id for p in expected} == {r["trial_id"] for r in rows if r["phase"] == "confirm"}


def test_rerun_resumes_without_running_or_duplicating_anything(finished_sweep) -> None:
    spec, results, _ = finished_sweep
    before = pq.read_table(results / "trials.parquet").to_pylist()
    outcome = _run(spec, storage=str(results.parent))
    after = pq.read_table(results / "trials.parquet").to_pylist()
    assert outcome.trials_recorded == 0
    assert sorted(r["trial_id"] for r in after) == sorted(r["trial_id"] for r in before)
    assert_journal_matches_parquet(results)


def test_results_in_the_old_layout_resume_and_move_to_the_new_one(finished_sweep, tmp_path) -> None:
    """tlsweep 0.1.0 kept the provenance in a `tlsweep:` block of spec.resolved.yaml and no provenance.json."""
    spec, results, _ = finished_sweep
    old = tmp_path / "runs" / "tiny"
    old.parent.mkdir()
    subprocess.run(["cp", "-r", str(results), str(old)], check=True)
    provenance = json.loads((old / "provenance.json").read_text())
    (old / "provenance.json").unlink()
    document = yaml.safe_load((old / "spec.resolved.yaml").read_text())
    document["tlsweep"] = {
        k: provenance[k] for k in ("spec_hash", "source", "versions", "trial_counts", "compared_arms")
    }
    (old / "spec.resolved.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    before = pq.read_table(old / "trials.parquet").to_pylist()
    outcome = _run(spec, storage=str(old.parent))
    assert outcome.trials_recorded == 0 and not outcome.interrupted
    assert sorted(r["trial_id"] for r in pq.read_table(old / "trials.parquet").to_pylist()) == sorted(
        r["trial_id"] for r in before
    )
    assert load_spec(old / "spec.resolved.yaml") == spec
    assert json.loads((old / "provenance.json").read_text())["spec_hash"] == spec.result_hash()


def test_status_command_reads_the_results_directory(finished_sweep) -> None:
    from tlsweep.cli import cli

    spec, results, _ = finished_sweep
    result = CliRunner().invoke(cli, ["status", str(results)])
    assert result.exit_code == 0, result.output
    assert (
        "not running" in result.output
        and f"{spec.design.budget.trials_per_cell}/{spec.design.budget.trials_per_cell}" in result.output
    )


def test_a_changed_spec_is_refused_and_new_keeps_the_old_results(finished_sweep, tiny_assets, tmp_path) -> None:
    from tlsweep.engine.run import check_resume

    spec, results, _ = finished_sweep
    data = json.loads(json.dumps(spec.resolved()))
    data["confirm"]["seeds"] = 1  # fewer: more seeds would extend the sweep (tests/test_extend.py)
    changed = parse_spec(data)
    with pytest.raises(StoreError, match=r"confirm\.seeds: 2 → 1"):
        check_resume(changed, ResultsStore(results), new=False)
    copy = tmp_path / "tiny"
    subprocess.run(["cp", "-r", str(results), str(copy)], check=True)
    check_resume(changed, ResultsStore(copy), new=True)
    assert not copy.exists() and len(list(tmp_path.glob("tiny.replaced-*"))) == 1


def test_a_three_arm_sweep_runs_end_to_end_and_reports_every_comparison(ray_local, tiny_assets, tmp_path) -> None:
    """Named arms through the real engine: fine-tune, a frozen body (linear probe) and scratch in one cell, lr tuned
    only where `when: {arm: ...}` says; the report holds both comparisons against the control."""
    data = tiny_spec_dict(tiny_assets, tmp_path / "runs", name="arms")
    data["design"] = {
        "arms": {
            "finetune": {"init": "checkpoint"},
            "probe": {"init": "checkpoint", "freeze_depth": 5},
            "scratch": {"init": "scratch"},
        },
        "factors": {"train_fraction": [1.0], "epochs": [1]},
        "tune": {
            "lr": {"type": "float", "low": 1.0e-3, "high": 0.3, "log": True, "when": {"arm": ["finetune", "scratch"]}}
        },
        "recipe": {"lr": 0.01},
        "budget": {"trials_per_cell": 2, "sampler": "tpe"},
    }
    data["hypothesis"] = {"compare": {"control": "scratch"}}
    spec = parse_spec(data)
    outcome = _run(spec)
    results = tmp_path / "runs" / "arms"
    rows = pq.read_table(results / "trials.parquet").to_pylist()
    assert not outcome.interrupted and len(rows) == sum(trial_counts(spec).values()) == 3 * 2 + 3 * 2
    assert Counter(r["arm"] for r in rows) == {"finetune": 4, "probe": 4, "scratch": 4}
    assert {(r["arm"], r["init"], r["freeze_depth"]) for r in rows} == {
        ("finetune", "checkpoint", 0),
        ("probe", "checkpoint", 5),
        ("scratch", "scratch", None),
    }
    tuned = {r["arm"]: set(json.loads(r["params_json"])["tuned"]) for r in rows if r["phase"] == "tune"}
    assert tuned == {"finetune": {"lr"}, "probe": set(), "scratch": {"lr"}}
    seeds = {arm: sorted(r["seed"] for r in rows if r["arm"] == arm and r["phase"] == "confirm") for arm in tuned}
    assert seeds["finetune"] == seeds["probe"] == seeds["scratch"]  # paired by seed across every arm
    from tlsweep.report import build_report

    report = build_report(results, n_resamples=99, formats=("md",))
    assert [part.name for part in report.comparisons] == ["finetune vs scratch", "probe vs scratch"]
    text = report.markdown_path.read_text()
    for part in report.comparisons:
        assert len(part.cell_table) == 1 and f"**{part.name}: " in text
        assert part.heatmap is not None and part.heatmap.exists()
