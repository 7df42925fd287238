"""The driver's single writer (``ResultsRecorder``) fed with fake Ray trials: rows, statuses, retries, requeues, resume.

No Ray instance: the callback methods are called the way Tune calls them, with objects that carry the attributes of
a Tune ``Trial`` that the recorder reads.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import ray.cloudpickle as cloudpickle
from ray.exceptions import ActorDiedError, RayTaskError
from ray_fakes import FakeTrial, confirm_trial, demo_spec, epoch_result, final_result, tune_trial

from tlsweep.design import PlannedTrial, study_trial_counts
from tlsweep.engine.progress import Progress, StatusBoard
from tlsweep.engine.recorder import ResultsRecorder
from tlsweep.results.store import ResultsStore
from tlsweep.tracking import Tracker


class RecordingTracker(Tracker):
    """Keeps every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def mode(self) -> str:
        return "offline"

    def trial_started(self, trial_id: str, *, name: str, config: dict[str, object], job_type: str) -> None:
        self.calls.append(("started", trial_id, {"name": name, "config": config, "job_type": job_type}))

    def trial_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        self.calls.append(("epoch", trial_id, {"epoch": epoch, **metrics}))

    def trial_finished(self, trial_id: str, *, summary: dict[str, object], status: str) -> None:
        self.calls.append(("finished", trial_id, {"status": status, **summary}))

    def close(self, timeout_s: float | None = None, *, complete: bool = False) -> None:
        pass

    def sync_command(self) -> str | None:
        return None


def _recorder(tmp_path: Path, spec=None, **kwargs: Any) -> ResultsRecorder:
    spec = spec or demo_spec()
    tracker = kwargs.pop("tracker", None) or RecordingTracker()
    kwargs.setdefault("flush_interval_s", 0.0)  # every trial reaches the store at once (the tests read it back)
    return ResultsRecorder(spec, ResultsStore(tmp_path), metadata={"spec_hash": "h1"}, tracker=tracker, **kwargs)


def _run(recorder: ResultsRecorder, trial: FakeTrial, epochs: list[dict[str, Any]], final: dict[str, Any] | None):
    """What Tune calls for one trial: start, one result per epoch, the final result, complete."""
    recorder.on_trial_start(0, [], trial)
    for result in epochs:
        trial.last_result = result
        recorder.on_trial_result(0, [], trial, result)
    if final is not None:
        trial.last_result = final
        recorder.on_trial_result(0, [], trial, final)
    recorder.on_trial_complete(0, [], trial)


def _pickled_error(tmp_path: Path, error: BaseException) -> str:
    path = tmp_path / f"error-{len(list(tmp_path.glob('error-*.pkl')))}.pkl"
    path.write_bytes(cloudpickle.dumps(error))
    return str(path)


def test_a_finished_trial_is_one_row_with_one_row_per_epoch(tmp_path: Path) -> None:
    spec = demo_spec()
    tracker = RecordingTracker()
    recorder = _recorder(tmp_path, spec, tracker=tracker)
    planned = tune_trial(spec, study=1, tune_index=1, lr=0.05)
    trial = FakeTrial.of(spec, planned, "ray-1")
    epochs = [epoch_result(1, 0.3), epoch_result(2, 0.5, val_loss=0.8)]
    recorder.on_trial_start(0, [], trial)
    for result in epochs:
        recorder.on_trial_result(0, [], trial, result)
    assert not ResultsStore(tmp_path).exists()  # nothing is written before the trial ends
    recorder.on_trial_result(0, [], trial, final_result(epochs))
    recorder.on_trial_complete(0, [], trial)

    store = ResultsStore(tmp_path)
    (row,) = store.read_trials().to_pylist()
    assert row["trial_id"] == planned.trial_id and row["phase"] == "tune" and row["sweep"] == "demo"
    assert (row["cell_id"], row["arm"], row["init"]) == (planned.cell_id, planned.arm, planned.arm)
    assert (row["tune_index"], row["config_kind"], row["seed"], row["replicate"]) == (1, "search", planned.seed, None)
    assert (
        row["lr"] == 0.05
        and row["augmentation"] == "none"
        and row["train_fraction"] == planned.levels["train_fraction"]
    )
    assert row["status"] == "ok" and row["attempts"] == 1 and row["error"] is None
    assert row["objective"] == row["best_val_acc"] == 0.5 and row["best_epoch"] == 2 and row["epochs_run"] == 2
    assert row["test_acc"] is None and row["test_mae"] is None  # the tune phase never records a test metric
    assert (row["node_id"], row["hostname"], row["wall_time_s"]) == ("node-a", "host-a", 3.0)
    assert store.read_metadata("trials") == store.read_metadata("epochs") == {"spec_hash": "h1"}
    rows = store.read_epochs().to_pylist()
    assert [(r["trial_id"], r["epoch"], r["val_acc"], r["step"]) for r in rows] == [
        (planned.trial_id, 1, 0.3, 10),
        (planned.trial_id, 2, 0.5, 20),
    ]
    assert {(r["phase"], r["cell_id"], r["arm"], r["seed"]) for r in rows} == {
        ("tune", planned.cell_id, planned.arm, planned.seed)
    }
    assert recorder.recorded == 1 and recorder.trials.equals(store.read_trials())

    kinds = [(kind, tid) for kind, tid, _ in tracker.calls]
    assert kinds == [
        ("started", planned.trial_id),
        ("epoch", planned.trial_id),
        ("epoch", planned.trial_id),
        ("finished", planned.trial_id),
    ]
    started = tracker.calls[0][2]
    assert started["job_type"] == "tune" and started["config"]["param.lr"] == 0.05
    assert started["config"]["factor.init"] == planned.arm and started["config"]["sweep"] == "demo"
    assert tracker.calls[2][2]["epoch"] == 2 and tracker.calls[2][2]["val_acc"] == 0.5
    assert tracker.calls[3][2]["status"] == "ok" and tracker.calls[3][2]["objective"] == 0.5


def test_a_confirm_row_carries_the_test_metrics(tmp_path: Path) -> None:
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    planned = confirm_trial(spec, study=2, replicate=3)
    epochs = [epoch_result(1, 0.4)]
    _run(recorder, FakeTrial.of(spec, planned, "ray-9"), epochs, final_result(epochs, resumed_from_epoch=None))
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert (row["phase"], row["replicate"], row["tune_index"], row["config_kind"]) == ("confirm", 3, None, "best")
    assert row["test_acc"] == 0.41 and row["test_balanced_acc"] == 0.4 and row["test_off_by_one"] == 0.7


def test_a_diverged_trial_is_an_outcome_and_infinities_are_stored_as_null(tmp_path: Path) -> None:
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    planned = tune_trial(spec, tune_index=0, lr=50.0)
    epochs = [epoch_result(1, 0.125, val_loss=float("inf"))]
    final = final_result(epochs, status="diverged", best_val_loss=float("inf"), best_epoch=0)
    _run(recorder, FakeTrial.of(spec, planned, "ray-d"), epochs, final)
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert row["status"] == "diverged" and row["error"] is None and row["attempts"] == 1
    assert row["objective"] == row["best_val_acc"] == 0.125 and row["best_val_loss"] is None
    (epoch,) = ResultsStore(tmp_path).read_epochs().to_pylist()
    assert epoch["val_loss"] is None and epoch["val_acc"] == 0.125


def test_a_trial_that_spent_its_retries_is_recorded_failed_with_the_last_error_line(tmp_path: Path) -> None:
    spec = demo_spec()
    requeued: list[PlannedTrial] = []
    recorder = _recorder(tmp_path, spec)
    recorder.requeue = requeued.append
    planned = tune_trial(spec, tune_index=2)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nRuntimeError: injected fault\n")
    trial = FakeTrial.of(
        spec,
        planned,
        "ray-f",
        num_failures=2,
        error_file=str(error_file),
        pickled_error_file=_pickled_error(tmp_path, RayTaskError("f", "tb", RuntimeError("x"))),
    )
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(0, [], trial, epoch_result(1, 0.2, node_id="node-b"))
    trial.last_result = {"node_id": "node-b"}
    recorder.on_trial_error(0, [], trial)
    assert requeued == []  # the trial's own error: never run again
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert row["status"] == "failed" and row["attempts"] == 2 and row["error"] == "RuntimeError: injected fault"
    assert row["node_id"] == "node-b" and row["objective"] is None and row["wall_time_s"] >= 0
    assert [r["epoch"] for r in ResultsStore(tmp_path).read_epochs().to_pylist()] == [1]

    other = FakeTrial.of(spec, tune_trial(spec, tune_index=1), "ray-g", num_failures=1, error_msg="worker OOM")
    recorder.on_trial_start(0, [], other)
    recorder.on_trial_error(0, [], other)
    by_id = {r["trial_id"]: r for r in ResultsStore(tmp_path).read_trials().to_pylist()}
    assert by_id[other.config["meta"].trial_id]["error"] == "worker OOM"
    assert recorder.recorded == 2


def test_a_trial_lost_with_its_node_is_requeued_instead_of_failed(tmp_path: Path) -> None:
    spec = demo_spec(failures__node_loss_requeues=1)
    requeued: list[PlannedTrial] = []
    recorder = _recorder(tmp_path, spec)
    recorder.requeue = requeued.append
    planned = tune_trial(spec, tune_index=1)
    lost = _pickled_error(tmp_path, RayTaskError("train", "tb", ActorDiedError()))
    first = FakeTrial.of(spec, planned, "ray-1", num_failures=2, pickled_error_file=lost)
    recorder.on_trial_start(0, [], first)
    recorder.on_trial_result(0, [], first, epoch_result(1, 0.3))
    recorder.on_trial_error(0, [], first)
    assert requeued == [planned] and recorder.recorded == 0 and not ResultsStore(tmp_path).exists()

    again = FakeTrial.of(spec, planned, "ray-2")  # the searcher handed out the same plan: same id, same seed
    epochs = [epoch_result(1, 0.3), epoch_result(2, 0.6)]
    _run(recorder, again, epochs[1:], final_result(epochs, resumed_from_epoch=1))
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert row["trial_id"] == planned.trial_id and row["status"] == "ok"
    assert row["attempts"] == 3 and row["resumed_from_epoch"] == 1  # the two attempts lost with the node count
    assert [r["epoch"] for r in ResultsStore(tmp_path).read_epochs().to_pylist()] == [1, 2]

    twice = tune_trial(spec, tune_index=2)  # lost again after its one extra run: recorded as failed
    for ray_id in ("ray-3", "ray-4"):
        trial = FakeTrial.of(spec, twice, ray_id, num_failures=2, pickled_error_file=lost, error_msg="actor died")
        recorder.on_trial_start(0, [], trial)
        recorder.on_trial_error(0, [], trial)
    assert requeued == [planned, twice]
    by_id = {r["trial_id"]: r for r in ResultsStore(tmp_path).read_trials().to_pylist()}
    assert by_id[twice.trial_id]["status"] == "failed" and by_id[twice.trial_id]["attempts"] == 4


@pytest.mark.parametrize("phase", ["tune", "confirm"])
def test_a_lost_trial_goes_back_to_the_searcher_that_handed_it_out(tmp_path: Path, phase: str) -> None:
    from confirm_plans import ConfirmSearcher
    from ray.tune.search import Searcher

    from tlsweep.engine.searchers import TuneSearcher

    spec = demo_spec(design__budget__trials_per_cell=1)
    if phase == "tune":
        searcher = TuneSearcher(spec)
    else:
        searcher = ConfirmSearcher(spec, planned=[confirm_trial(spec, study=s) for s in range(2)])
    recorder = _recorder(tmp_path, spec)
    recorder.connect(requeue=searcher.requeue, pruned=None)  # as tlsweep.engine.run wires them
    handed = searcher.suggest("ray-1")
    trial = FakeTrial("ray-1", handed, num_failures=2, pickled_error_file=_pickled_error(tmp_path, ActorDiedError()))
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_error(0, [], trial)
    searcher.on_trial_complete("ray-1", None, error=True)
    again = [searcher.suggest(f"ray-{n}") for n in range(2, 2 + searcher.remaining())]
    assert again.count(handed) == 1  # the same plan, params and seed (tune: when its study's turn comes)
    assert phase == "tune" or again[0] == handed  # confirm: next
    assert searcher.remaining() == 0
    assert searcher.suggest("ray-last") is None  # trials still run: Tune must keep asking
    for n in range(2, 2 + len(again)):
        searcher.on_trial_complete(f"ray-{n}", {"final": True, "objective": 0.5, "val_metric": 0.5})
    assert searcher.suggest("ray-last") == Searcher.FINISHED
    assert recorder.recorded == 0


def test_without_a_searcher_to_requeue_to_a_lost_trial_fails(tmp_path: Path) -> None:
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    lost = _pickled_error(tmp_path, ActorDiedError())
    trial = FakeTrial.of(spec, tune_trial(spec), "ray-1", num_failures=3, pickled_error_file=lost)
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_error(0, [], trial)
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert row["status"] == "failed" and row["attempts"] == 3


def test_a_trial_stopped_by_the_scheduler_is_recorded_pruned_from_its_epochs(tmp_path: Path) -> None:
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    recorder.pruned.add("ray-p")
    planned = tune_trial(spec, study=3, tune_index=2)
    trial = FakeTrial.of(spec, planned, "ray-p")
    _run(
        recorder,
        trial,
        [epoch_result(1, 0.3, val_loss=1.2), epoch_result(2, 0.25, val_loss=0.9, node_id="node-c")],
        None,
    )
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert row["status"] == "pruned" and row["epochs_run"] == 2
    assert (row["best_val_acc"], row["best_val_loss"], row["best_epoch"]) == (0.3, 1.2, 1)
    assert row["final_val_acc"] == 0.25 and row["objective"] == 0.3 and row["node_id"] == "node-c"
    assert row["test_acc"] is None
    assert len(ResultsStore(tmp_path).read_epochs()) == 2


def test_a_trial_cut_short_without_a_result_is_not_recorded(tmp_path: Path) -> None:
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    trial = FakeTrial.of(spec, tune_trial(spec), "ray-x")
    _run(recorder, trial, [epoch_result(1, 0.3)], None)  # Ctrl-C, or the end of the experiment
    assert recorder.recorded == 0 and not ResultsStore(tmp_path).exists()
    assert "ray-x" not in recorder._epochs_buffer and "ray-x" not in recorder._started


def test_a_resumed_sweep_upserts_rows_without_duplicates(tmp_path: Path) -> None:
    spec = demo_spec()
    first_run = _recorder(tmp_path, spec)
    a, b = tune_trial(spec, tune_index=0), tune_trial(spec, tune_index=1)
    epochs = [epoch_result(1, 0.3), epoch_result(2, 0.4)]
    _run(first_run, FakeTrial.of(spec, a, "ray-a"), epochs, final_result(epochs))

    second_run = _recorder(tmp_path, spec)  # a new driver: it starts from what is on disk
    assert second_run.trials.column("trial_id").to_pylist() == [a.trial_id] and len(second_run.epochs) == 2
    _run(second_run, FakeTrial.of(spec, b, "ray-b"), epochs[:1], final_result(epochs[:1]))
    more = [*epochs, epoch_result(3, 0.45)]  # trial a again (resumed from epoch 2): its history has every epoch
    _run(second_run, FakeTrial.of(spec, a, "ray-a2"), more[2:], final_result(more, resumed_from_epoch=2))

    store = ResultsStore(tmp_path)
    rows = {r["trial_id"]: r for r in store.read_trials().to_pylist()}
    assert len(store.read_trials()) == 2 and set(rows) == {a.trial_id, b.trial_id}
    assert rows[a.trial_id]["epochs_run"] == 3 and rows[a.trial_id]["resumed_from_epoch"] == 2
    keys = [(r["trial_id"], r["epoch"]) for r in store.read_epochs().to_pylist()]
    assert len(keys) == len(set(keys)) == 4
    assert sorted(k for k in keys if k[0] == a.trial_id) == [(a.trial_id, 1), (a.trial_id, 2), (a.trial_id, 3)]


def test_a_progress_view_follows_the_recorded_trials(tmp_path: Path) -> None:
    spec = demo_spec()
    documents: list[str] = []
    board = StatusBoard(study_trial_counts(spec))
    progress = Progress(board, title="demo", concurrency=2, write_status=documents.append, live=False)
    recorder = _recorder(tmp_path, spec, progress=progress)
    planned = tune_trial(spec, study=0, tune_index=0)
    trial = FakeTrial.of(spec, planned, "ray-1")
    recorder.on_trial_start(0, [], trial)
    assert board.line("tune", planned.cell_id, planned.arm).running == {planned.trial_id}
    recorder.on_trial_result(0, [], trial, epoch_result(1, 0.5))
    recorder.on_trial_result(0, [], trial, final_result([epoch_result(1, 0.5)]))
    recorder.on_trial_complete(0, [], trial)
    line = board.line("tune", planned.cell_id, planned.arm)
    assert line.running == set() and line.done == 1 and line.best == 0.5
    assert '"running": []' in documents[-1]


def test_a_restored_copy_of_the_callback_records_nothing(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    assert pickle.loads(pickle.dumps(recorder)).__dict__ == {}  # Tuner pickles callbacks; store/tracker stay home


@pytest.mark.parametrize(("phase", "study"), [("tune", 0), ("tune", 5), ("confirm", 1), ("confirm", 6)])
def test_freeze_depth_is_recorded_for_pretrained_arms_only(tmp_path: Path, phase: str, study: int) -> None:
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    planned = tune_trial(spec, study=study) if phase == "tune" else confirm_trial(spec, study=study)
    trial = FakeTrial.of(spec, planned, "ray-s")
    epochs = [epoch_result(1, 0.3)]
    _run(recorder, trial, epochs, final_result(epochs))
    (row,) = ResultsStore(tmp_path).read_trials().to_pylist()
    assert row["phase"] == phase and row["finished_at"] is not None
    if planned.arm == "scratch":
        assert row["freeze_depth"] is None
    else:
        assert row["freeze_depth"] == trial.config["trial"].freeze_depth is not None


def test_finished_trials_are_appended_in_batches_and_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = demo_spec()
    clock = [100.0]
    monkeypatch.setattr("tlsweep.engine.recorder.time.monotonic", lambda: clock[0])
    recorder = _recorder(tmp_path, spec, flush_interval_s=2.0)
    store = ResultsStore(tmp_path)
    epochs = [epoch_result(1, 0.3), epoch_result(2, 0.4)]
    planned = [tune_trial(spec, tune_index=i) for i in range(3)]
    for i, p in enumerate(planned[:2]):
        _run(recorder, FakeTrial.of(spec, p, f"ray-{i}"), epochs, final_result(epochs))
    assert not store.exists() and recorder.recorded == 2  # within the interval: buffered, nothing written yet
    clock[0] += 1.0
    recorder.on_step_end(0, [])
    assert not store.exists()
    clock[0] += 1.0
    recorder.on_step_end(0, [])  # 2 s after the last flush: one part per table holds both trials
    assert store.part_names("trials.parquet") == ["parts/trials/part-0000000000.parquet"]
    assert len(store.read_trials()) == 2 and len(store.read_epochs()) == 4
    assert recorder._pending_trials == [] and recorder._pending_epochs == []  # the driver keeps no recorded rows

    _run(recorder, FakeTrial.of(spec, planned[2], "ray-2"), epochs, final_result(epochs))
    assert len(store.read_trials()) == 2  # a SIGKILL now loses this one trial: it was not flushed and reruns
    recorder.on_experiment_end([])
    assert len(store.read_trials()) == 3 and len(store.part_names("trials.parquet")) == 2
    recorder.compact()
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert files == ["epochs.parquet", "trials.parquet"]
    assert sorted(store.read_trials().column("trial_id").to_pylist()) == sorted(p.trial_id for p in planned)
    assert store.read_metadata("trials") == {"spec_hash": "h1"}


def test_a_new_driver_resumes_from_parts_left_by_a_killed_one(tmp_path: Path) -> None:
    spec = demo_spec()
    epochs = [epoch_result(1, 0.3)]
    killed = _recorder(tmp_path, spec)
    a, b = tune_trial(spec, tune_index=0), tune_trial(spec, tune_index=1)
    _run(killed, FakeTrial.of(spec, a, "ray-a"), epochs, final_result(epochs))  # flushed, never compacted
    resumed = _recorder(tmp_path, spec)
    assert resumed.trials.column("trial_id").to_pylist() == [a.trial_id]
    _run(resumed, FakeTrial.of(spec, b, "ray-b"), epochs, final_result(epochs))
    store = ResultsStore(tmp_path)
    assert store.part_names("trials.parquet")[-1].endswith("part-0000000001.parquet")  # the sequence continues
    assert sorted(store.read_trials().column("trial_id").to_pylist()) == sorted([a.trial_id, b.trial_id])


def test_slot_efficiency_is_epoch_time_over_the_slots_time_from_first_start_to_last_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsweep.engine import recorder as recorder_module

    clock = [100.0]
    monkeypatch.setattr(recorder_module.time, "time", lambda: clock[0])
    spec = demo_spec()
    recorder = _recorder(tmp_path, spec)
    assert recorder.trials_span_s is None and recorder.slot_efficiency(2) is None
    a, b = (FakeTrial.of(spec, tune_trial(spec, study=s, tune_index=1), f"ray-{s}") for s in (0, 1))
    recorder.on_trial_start(0, [], a)
    clock[0] = 101.0
    recorder.on_trial_start(0, [], b)
    for trial, end, wall in ((a, 102.0, 1.5), (b, 104.0, 2.5)):  # a started training at 100.5 (after its imports)
        clock[0] = end
        history = [epoch_result(1, 0.3), epoch_result(2, 0.4)]  # 0.5 s each
        for result in history:
            recorder.on_trial_result(0, [], trial, result)
        recorder.on_trial_result(0, [], trial, final_result(history, wall_time_s=wall))
        recorder.on_trial_complete(0, [], trial)
    assert recorder.busy_s == 2.0 and recorder.trials_span_s == 3.5
    assert recorder.slot_efficiency(2) == 2.0 / (2 * 3.5)


def test_epochs_reported_together_or_only_in_the_history_reach_w_and_b_in_order(tmp_path: Path) -> None:
    spec = demo_spec()
    tracker = RecordingTracker()
    recorder = _recorder(tmp_path, spec, tracker=tracker)
    trial = FakeTrial.of(spec, confirm_trial(spec, study=1), "ray-1")
    history = [epoch_result(e, 0.1 * e) for e in (1, 2, 3, 4, 5)]
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(0, [], trial, {**history[2], "epochs": history[:3]})  # epochs 1-3 in one report
    recorder.on_trial_result(0, [], trial, final_result(history))  # 4 and 5 were never reported live
    recorder.on_trial_complete(0, [], trial)
    logged = [call[2]["epoch"] for call in tracker.calls if call[0] == "epoch"]
    assert logged == [1, 2, 3, 4, 5]
    assert [call[0] for call in tracker.calls][-1] == "finished"
    epochs = ResultsStore(tmp_path).read_epochs().to_pylist()
    assert sorted(r["epoch"] for r in epochs) == [1, 2, 3, 4, 5]
