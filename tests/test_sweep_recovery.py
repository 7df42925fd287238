"""A sweep outlives what kills it: Ctrl-C and kill -9 of the driver, a driver death mid-trial, a lost worker process.

Each test runs sweeps of its own (the slowest in the suite), apart from test_sweep.py so that parallel workers
(``pytest -n``) take them side by side."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from confirm_plans import plan_confirm
from faults import TrialFault, injected, kill_driver_command
from sweep_fixtures import assert_journal_matches_parquet, tiny_spec_dict

from tlsweep.design import studies, trial_counts
from tlsweep.results.store import ResultsStore
from tlsweep.spec_load import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _run(spec, **kwargs):
    from tlsweep.engine.run import run_sweep

    return run_sweep(spec, live=False, report=kwargs.pop("report", False), **kwargs)


def _resume_in_this_process(path) -> None:
    """``tlsweep run PATH --no-report`` after a driver's death, on the session's Ray (a new driver, as after a crash)."""
    from tlsweep.cli import cli

    done = CliRunner().invoke(cli, ["run", str(path), "--no-report"])
    assert done.exit_code == 0, (done.output[-3000:], done.exception)


def test_a_driver_killed_with_sigkill_resumes_to_exactly_the_planned_trials(ray_local, tiny_assets, tmp_path) -> None:
    spec_dict = tiny_spec_dict(tiny_assets, tmp_path / "runs", name="killed")
    spec_dict["design"]["factors"]["epochs"] = [2]
    spec_dict["design"]["early_stopping"] = {"type": "asha", "grace_period": 1, "reduction_factor": 2}
    # enough confirm trials that the kill below lands mid-sweep although finished rows reach the disk in batches
    # (with 4 seeds an idle machine recorded all 24 trials before the kill)
    spec_dict["confirm"]["seeds"] = 8
    planned_total = sum(trial_counts(parse_spec(spec_dict)).values())
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(spec_dict))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "tlsweep", "run", str(path), "--num-cpus", "2", "--no-report"]
    trials_file = tmp_path / "runs" / "killed" / "trials.parquet"

    def start_and_wait_for_rows(rows: int) -> subprocess.Popen:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if ResultsStore(trials_file.parent).read_trials().num_rows >= rows:  # with the parts appended mid-phase
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep finished before it could be stopped"
        return proc

    # Ctrl-C: a clean stop that says how to resume, and nothing half-done recorded
    proc = start_and_wait_for_rows(2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-2000:]
    assert f"Resume with:\n  tlsweep run {path}" in output
    interrupted = ResultsStore(trials_file.parent).read_trials().to_pylist()
    assert {r["status"] for r in interrupted} <= {"ok", "diverged", "pruned"}
    assert all(r["epochs_run"] == 2 or r["status"] == "pruned" for r in interrupted)

    # kill -9 of the whole process group at a later moment
    proc = start_and_wait_for_rows(len(interrupted) + 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_rows = ResultsStore(trials_file.parent).read_trials().num_rows  # the killed phase's rows are parts
    assert planned_total == 40 and len(interrupted) + 2 <= killed_rows < planned_total
    _resume_in_this_process(path)
    rows = pq.read_table(trials_file).to_pylist()
    spec = parse_spec(spec_dict)
    tune = [r for r in rows if r["phase"] == "tune"]
    assert len(rows) == len({r["trial_id"] for r in rows})
    per_study = Counter((r["cell_id"], r["arm"]) for r in tune)
    assert set(per_study.values()) == {2} and len(per_study) == len(studies(spec))
    for key in per_study:
        assert sorted(r["tune_index"] for r in tune if (r["cell_id"], r["arm"]) == key) == [0, 1]
    expected, _ = plan_confirm(spec, tune)
    assert {p.trial_id for p in expected} == {r["trial_id"] for r in rows if r["phase"] == "confirm"}
    assert {r["status"] for r in tune} <= {"ok", "pruned", "diverged"}
    assert_journal_matches_parquet(trials_file.parent)  # after Ctrl-C, kill -9 and resume: each trial once


def test_a_trial_running_when_the_driver_died_continues_from_its_checkpoint(ray_local, tiny_assets, tmp_path) -> None:
    from tlsweep.data.loading import load_dataset
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial

    spec_dict = tiny_spec_dict(tiny_assets, tmp_path / "runs", name="reborn")
    spec_dict["design"]["factors"].update(train_fraction=[1.0], epochs=[3])
    spec_dict["checkpoints"] = {"every": {"epochs": 1}}  # this test is about resuming from an epoch's checkpoint
    path = tmp_path / "reborn.yaml"
    path.write_text(yaml.safe_dump(spec_dict))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    run_args = [str(path), "--num-cpus", "2", "--no-report"]
    # the driver SIGKILLs itself once tune trial 1 of the scratch study has checkpointed epoch 1
    dying = kill_driver_command({"phase": "tune", "tune_index": 1, "arm": "scratch"}, after_epoch=1, run_args=run_args)
    proc = subprocess.Popen(
        dying, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert proc.wait(timeout=300) == -signal.SIGKILL
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the dead driver's Ray processes
        except ProcessLookupError:
            pass
    _resume_in_this_process(path)
    results = tmp_path / "runs" / "reborn"
    rows = pq.read_table(results / "trials.parquet").to_pylist()
    reborn = [r for r in rows if r["resumed_from_epoch"] is not None]  # every trial running at the death
    assert ("tune", 1, "scratch") in [(r["phase"], r["tune_index"], r["arm"]) for r in reborn]
    spec = parse_spec(spec_dict)
    assert len(rows) == len({r["trial_id"] for r in rows}) == sum(trial_counts(spec).values())
    epochs = pq.read_table(results / "epochs.parquet").to_pylist()
    data = load_dataset(spec.dataset, image_size=spec.model.image_size)
    for row in reborn:
        assert row["resumed_from_epoch"] >= 1 and row["epochs_run"] == 3
        # the epochs run before the death are kept too
        assert sorted(e["epoch"] for e in epochs if e["trial_id"] == row["trial_id"]) == [1, 2, 3]
        config = TrialConfig.from_dict(json.loads(row["params_json"])["config"]).replace(num_threads=1)
        fresh = run_trial(config, data)
        assert (fresh.best_val_acc, fresh.final_val_acc) == (row["best_val_acc"], row["final_val_acc"])


def test_a_trial_whose_worker_process_dies_runs_again_and_continues(ray_local, tiny_assets, tmp_path) -> None:
    """Ray's retries are all spent (max_retries 0), yet a worker lost mid-trial costs a rerun, not a result."""
    spec_dict = tiny_spec_dict(tiny_assets, tmp_path, name="lostworker")
    spec_dict["design"]["factors"].update(train_fraction=[1.0], epochs=[2])
    spec_dict["design"]["budget"]["trials_per_cell"] = 1
    spec_dict["confirm"]["seeds"] = 1
    spec_dict["failures"] = {"max_retries": 0, "node_loss_requeues": 1}
    spec_dict["checkpoints"] = {"every": {"epochs": 1}}  # it continues from epoch 1's checkpoint (the default: rerun)
    spec = parse_spec(spec_dict)
    # the worker process exits (as with a reclaimed node) after epoch 1 of the scratch tune trial, once
    fault = TrialFault({"phase": "tune", "arm": "scratch"}, after_epoch=1, kill_worker=True, first_attempt_only=True)
    with injected(fault):
        outcome = _run(spec)
    rows = pq.read_table(tmp_path / "lostworker" / "trials.parquet").to_pylist()
    assert not outcome.interrupted and len(rows) == sum(trial_counts(spec).values())
    assert {r["status"] for r in rows} == {"ok"}
    lost = next(r for r in rows if r["phase"] == "tune" and r["arm"] == "scratch")
    assert lost["attempts"] == 2 and lost["resumed_from_epoch"] == 1 and lost["epochs_run"] == 2
    assert all(r["attempts"] == 1 for r in rows if r is not lost)
    epochs = pq.read_table(tmp_path / "lostworker" / "epochs.parquet").to_pylist()
    assert sorted(e["epoch"] for e in epochs if e["trial_id"] == lost["trial_id"]) == [1, 2]

    # with no rerun left, the same loss is recorded as a failure, and the sweep goes on
    spec_dict.update(name="lostworker0", failures={"max_retries": 0, "node_loss_requeues": 0})
    spec = parse_spec(spec_dict)
    with injected(dataclasses.replace(fault, first_attempt_only=False)):
        outcome = _run(spec)
    rows = pq.read_table(tmp_path / "lostworker0" / "trials.parquet").to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["phase"], r["arm"]) for r in failed] == [("tune", "scratch")] and failed[0]["attempts"] == 1
    assert "Actor" in (failed[0]["error"] or "") or "died" in (failed[0]["error"] or ""), failed[0]["error"]
