"""Every study of a sweep mirrored into Optuna's own storage (``tlsweep.tracking.optuna_mirror``), fed by the
recorder with fake Ray trials and by simulated results directories; read back with ``optuna.load_study``."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray_fakes import FakeTrial, confirm_trial, demo_spec, epoch_result, final_result, tune_trial
from report_fixtures import simulate_results

from tlsweep.engine.recorder import ResultsRecorder
from tlsweep.results.store import ResultsStore
from tlsweep.tracking import NullTracker
from tlsweep.tracking.optuna_mirror import JOURNAL_FILE, StudyMirror, open_study_mirror, study_name
from tlsweep.tracking.study_dashboard import StudyDashboardError, prepare_journal


def _studies(path: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Every study in the journal, as Optuna itself reads it (a fresh storage object: nothing cached)."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    return {
        summary.study_name: optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        for summary in optuna.get_all_study_summaries(storage)
    }


def _parquet_counts(root: Path) -> Counter[str]:
    rows = ResultsStore(root).read_trials().to_pylist()  # the compacted file and any parts
    return Counter(study_name(r["phase"], r["cell_id"], r["arm"]) for r in rows)


def _run(recorder: ResultsRecorder, trial: FakeTrial, epochs: list[dict[str, Any]], final: dict[str, Any]) -> None:
    recorder.on_trial_start(0, [], trial)
    for result in epochs:
        trial.last_result = result
        recorder.on_trial_result(0, [], trial, result)
    trial.last_result = final
    recorder.on_trial_result(0, [], trial, final)
    recorder.on_trial_complete(0, [], trial)


def test_the_recorder_mirrors_each_trial_into_its_study_once(tmp_path: Path) -> None:
    spec = demo_spec()
    store = ResultsStore(tmp_path)
    mirror = open_study_mirror(spec, store)
    recorder = ResultsRecorder(spec, store, metadata={}, tracker=NullTracker(), mirror=mirror, flush_interval_s=0)
    first, second = tune_trial(spec, study=0, tune_index=0, lr=0.05), tune_trial(spec, study=1, tune_index=1, lr=0.2)
    confirm = confirm_trial(spec, study=0, replicate=2)
    epochs = [epoch_result(1, 0.3), epoch_result(2, 0.5, val_loss=0.8)]
    _run(recorder, FakeTrial.of(spec, first, "ray-1"), epochs, final_result(epochs))
    _run(recorder, FakeTrial.of(spec, second, "ray-2"), epochs[:1], final_result(epochs[:1], status="diverged"))
    _run(recorder, FakeTrial.of(spec, confirm, "ray-3"), epochs, final_result(epochs))

    assert (tmp_path / JOURNAL_FILE).is_file()
    studies = _studies(tmp_path / JOURNAL_FILE)
    assert Counter({k: len(v) for k, v in studies.items()}) == _parquet_counts(tmp_path)
    (trial,) = studies[study_name("tune", first.cell_id, first.arm)]
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5
    assert trial.params["lr"] == 0.05 and trial.intermediate_values == {1: 0.3, 2: 0.5}
    assert {k: trial.user_attrs[k] for k in ("trial_id", "seed", "cell_id", "arm", "phase", "tune_index")} == {
        "trial_id": first.trial_id,
        "seed": first.seed,
        "cell_id": first.cell_id,
        "arm": first.arm,
        "phase": "tune",
        "tune_index": 0,
    }
    (diverged,) = studies[study_name("tune", second.cell_id, second.arm)]
    assert diverged.user_attrs["status"] == "diverged" and diverged.state == TrialState.COMPLETE
    (confirmed,) = studies[study_name("confirm", confirm.cell_id, confirm.arm)]
    assert confirmed.user_attrs["test_acc"] == 0.41 and confirmed.user_attrs["replicate"] == 2
    assert confirmed.user_attrs["seed"] == confirm.seed
    study = optuna.load_study(
        study_name=study_name("tune", first.cell_id, first.arm),
        storage=JournalStorage(JournalFileBackend(str(tmp_path / JOURNAL_FILE))),
    )
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and study.user_attrs["sweep"] == spec.name

    # resume: a new driver's mirror syncs from Parquet and the same trial recorded again adds nothing
    again = open_study_mirror(spec, store)
    assert again.trial_ids() == {first.trial_id, second.trial_id, confirm.trial_id}
    assert again.sync(store.read_trials(), store.read_epochs()) == 0
    resumed = ResultsRecorder(spec, store, metadata={}, tracker=NullTracker(), mirror=again, flush_interval_s=0)
    _run(resumed, FakeTrial.of(spec, first, "ray-7"), epochs, final_result(epochs))
    assert Counter({k: len(v) for k, v in _studies(tmp_path / JOURNAL_FILE).items()}) == _parquet_counts(tmp_path)


def test_sync_from_parquet_matches_every_study_and_is_idempotent(tmp_path: Path) -> None:
    def status_of(phase: str, cell: str, arm: str, seed: int, index: int | None) -> str:
        return {1: "failed", 2: "diverged"}.get(index or 0, "ok") if phase == "tune" else "ok"

    root = simulate_results(tmp_path / "r", seeds=3, trials_per_cell=4, status_of=status_of)
    journal = prepare_journal(root)
    assert journal.built and journal.path == root / JOURNAL_FILE
    expected = _parquet_counts(root)
    assert journal.studies == len(expected) == 16 and journal.trials == sum(expected.values())
    studies = _studies(journal.path)
    assert Counter({k: len(v) for k, v in studies.items()}) == expected
    ids = [t.user_attrs["trial_id"] for trials in studies.values() for t in trials]
    assert sorted(ids) == sorted(pq.read_table(root / "trials.parquet").column("trial_id").to_pylist())
    states = Counter(t.user_attrs["status"] + ":" + t.state.name for trials in studies.values() for t in trials)
    assert states == {"ok:COMPLETE": 64, "failed:FAIL": 8, "diverged:COMPLETE": 8}

    again = prepare_journal(root)
    assert not again.built and (again.studies, again.trials) == (journal.studies, journal.trials)
    spec = ResultsStore(root).read_spec()
    mirror = StudyMirror(spec, root / JOURNAL_FILE)
    store = ResultsStore(root)
    assert mirror.sync(store.read_trials(), store.read_epochs()) == 0


def test_a_journal_cut_short_by_a_killed_driver_is_repaired_and_completed(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    store = ResultsStore(root)
    spec = store.read_spec()
    rows, epochs = store.read_trials(), store.read_epochs()
    StudyMirror(spec, root / JOURNAL_FILE).sync(rows.slice(0, 5), epochs)
    path = root / JOURNAL_FILE
    path.write_bytes(path.read_bytes()[:-7])  # kill -9 in the middle of an append
    mirror = StudyMirror(spec, path)
    assert mirror.enabled and len(mirror.trial_ids()) == 4
    assert mirror.sync(rows, epochs) == rows.num_rows - 4
    assert Counter({k: len(v) for k, v in _studies(path).items()}) == _parquet_counts(root)


def test_an_unreadable_journal_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    root = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    store = ResultsStore(root)
    (root / JOURNAL_FILE).write_bytes(b"not json\n{}\n")
    with pytest.raises(StudyDashboardError, match=r"optuna.journal: Optuna cannot read.*--rebuild"):
        prepare_journal(root)  # the dashboard only reads: a sweep may be writing the file
    journal = prepare_journal(root, rebuild=True)
    assert journal.built and journal.trials == store.read_trials().num_rows
    (replaced,) = root.glob(f"{JOURNAL_FILE}.replaced-*")
    assert replaced.read_bytes() == b"not json\n{}\n"

    (root / JOURNAL_FILE).write_bytes(b"not json\n{}\n")  # the sweep driver, the only writer, sets it aside
    mirror = open_study_mirror(store.read_spec(), store)
    assert mirror.enabled and mirror.sync(store.read_trials(), store.read_epochs()) == store.read_trials().num_rows
    (aside,) = root.glob(f"{JOURNAL_FILE}.unreadable-*")
    assert aside.read_bytes() == b"not json\n{}\n"


def test_the_mirror_never_breaks_the_recorder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = demo_spec()
    store = ResultsStore(tmp_path)
    mirror = open_study_mirror(spec, store)
    assert mirror.record({"trial_id": "x"}) is False  # a row without phase/cell/arm: logged, mirror turned off
    assert not mirror.enabled
    recorder = ResultsRecorder(spec, store, metadata={}, tracker=NullTracker(), mirror=mirror, flush_interval_s=0)
    planned = tune_trial(spec)
    epochs = [epoch_result(1, 0.3)]
    with caplog.at_level(logging.WARNING, logger="tlsweep.tracking"):
        _run(recorder, FakeTrial.of(spec, planned, "ray-1"), epochs, final_result(epochs))
    assert store.read_trials().column("trial_id").to_pylist() == [planned.trial_id]
    assert mirror.trial_ids() == set() and mirror.sync(store.read_trials()) == 0


def test_remote_results_get_the_journal_when_a_phase_ends(tmp_path: Path, s3_env: Any) -> None:
    local = simulate_results(tmp_path / "r", seeds=2, trials_per_cell=2)
    source = ResultsStore(local)
    spec = source.read_spec()
    remote = ResultsStore(s3_env.uri("demo"))
    remote.write_trials(source.read_trials())
    mirror = open_study_mirror(spec, remote, staging=tmp_path / "staging")
    assert mirror.path == tmp_path / "staging" / JOURNAL_FILE and remote.read_bytes(JOURNAL_FILE) is None
    rows = source.read_trials()
    mirror.sync(rows.slice(0, 3), source.read_epochs())
    mirror.publish()
    copy = tmp_path / "copy.journal"
    copy.write_bytes(remote.read_bytes(JOURNAL_FILE) or b"")
    assert sum(len(v) for v in _studies(copy).values()) == 3

    # a new head node: the staging copy is seeded from the bucket, so nothing is added twice
    resumed = open_study_mirror(spec, remote, staging=tmp_path / "staging2")
    assert len(resumed.trial_ids()) == 3
    assert resumed.sync(rows, source.read_epochs()) == rows.num_rows - 3
    resumed.publish()
    copy.write_bytes(remote.read_bytes(JOURNAL_FILE) or b"")
    assert Counter({k: len(v) for k, v in _studies(copy).items()}) == _parquet_counts(local)
