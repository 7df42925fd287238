"""The checkpoint policy (spec ``checkpoints:``): the trainable's per-epoch decision, the spec block, and the
deletion of a recorded trial's checkpoints by the results recorder (fake Ray trials, a real local storage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray_fakes import FakeTrial, confirm_trial, demo_spec, epoch_result, final_result, tune_trial

from tlsweep.design import PlannedTrial
from tlsweep.engine.checkpoints import checkpoint_due, delete_checkpoints
from tlsweep.engine.trainable import trial_dirname
from tlsweep.errors import SpecError
from tlsweep.results.location import resolve_location
from tlsweep.spec import CheckpointEvery, CheckpointSpec

SECONDS_60 = CheckpointSpec()
EVERY_EPOCH = CheckpointSpec(every=CheckpointEvery(epochs=1), keep="none")


def _due(policy, epoch, elapsed_s, last_s=0.0, *, final=False, keep=False):
    return checkpoint_due(policy, epoch=epoch, final=final, elapsed_s=elapsed_s, last_checkpoint_s=last_s, keep=keep)


def test_the_default_is_at_most_one_checkpoint_per_60_s_of_training() -> None:
    assert SECONDS_60.model_dump() == {"every": {"seconds": 60.0, "epochs": None}, "keep": "none"}
    # a trial shorter than the interval saves nothing, not even after its last epoch (it would be deleted at once)
    assert [_due(SECONDS_60, e, 10.0 * e, final=e == 5) for e in range(1, 6)] == [False] * 5
    # a long trial: one save once 60 s passed since the last one (or since the start)
    saves, last = [], 0.0
    for epoch in range(1, 21):
        elapsed = 25.0 * epoch
        if _due(SECONDS_60, epoch, elapsed, last):
            saves.append(epoch)
            last = elapsed
    assert saves == [3, 6, 9, 12, 15, 18]  # 75 s, 150 s, …: never two within 60 s of training
    assert _due(SECONDS_60, 4, 100.0, last_s=40.0) and not _due(SECONDS_60, 4, 99.9, last_s=40.0)


def test_every_n_epochs_and_the_final_checkpoint_of_kept_trials() -> None:
    every_2 = CheckpointSpec(every=CheckpointEvery(epochs=2), keep="none")
    assert [_due(every_2, e, 1000.0 * e) for e in range(1, 7)] == [False, True, False, True, False, True]
    assert [_due(EVERY_EPOCH, e, 0.1) for e in (1, 2, 3)] == [True] * 3
    # a kept trial always saves its last epoch (its weights are what is kept), whatever the interval
    assert _due(SECONDS_60, 3, 5.0, final=True, keep=True) and _due(every_2, 3, 5.0, final=True, keep=True)
    assert not _due(SECONDS_60, 2, 5.0, final=False, keep=True)


def test_which_phases_keep_their_checkpoints() -> None:
    for keep, expected in {"none": (False, False), "confirm": (False, True), "all": (True, True)}.items():
        policy = CheckpointSpec(keep=keep)
        assert (policy.keeps("tune"), policy.keeps("confirm")) == expected
    best = CheckpointSpec(keep="best")  # what `tlsweep export --best` reads: the selected configs' confirm trials
    assert [best.keeps(phase, kind) for phase, kind in (("tune", "search"), ("confirm", "recipe"))] == [False, False]
    assert best.keeps("confirm", "best")


def test_the_spec_block_is_validated_with_a_clear_error() -> None:
    assert demo_spec().checkpoints == CheckpointSpec()
    spec = demo_spec(checkpoints={"every": {"epochs": 3}, "keep": "confirm"})
    assert spec.checkpoints.every.epochs == 3 and spec.checkpoints.every.seconds is None
    with pytest.raises(SpecError, match="exactly one of seconds"):
        demo_spec(checkpoints={"every": {"epochs": 3, "seconds": 10}})
    with pytest.raises(SpecError, match="exactly one of seconds"):
        demo_spec(checkpoints={"every": {}})
    with pytest.raises(SpecError, match=r"checkpoints\.keep"):
        demo_spec(checkpoints={"keep": "latest"})
    with pytest.raises(SpecError, match=r"checkpoints\.every\.seconds"):
        demo_spec(checkpoints={"every": {"seconds": 0}})


def _checkpoint(root: Path, experiment: str, dirname: str, index: int = 0) -> Path:
    path = root / "ray" / experiment / dirname / f"checkpoint_{index:06d}"
    path.mkdir(parents=True)
    (path / "state.pt").write_bytes(b"x" * 10)
    return path


def test_delete_checkpoints_removes_the_trial_s_checkpoints_in_every_experiment_of_its_phase(tmp_path: Path) -> None:
    mine = [
        _checkpoint(tmp_path, "tune-20260101T000000", "tune-abc"),
        _checkpoint(tmp_path, "tune-20260102T000000", "tune-abc", 3),
    ]
    others = [
        _checkpoint(tmp_path, "tune-20260101T000000", "tune-def"),  # another trial
        _checkpoint(tmp_path, "confirm-20260101T000000", "tune-abc"),  # another phase's experiment
    ]
    (tmp_path / "ray" / "tune-20260101T000000" / "tune-abc" / "params.json").write_text("{}")
    assert delete_checkpoints(resolve_location(tmp_path / "ray"), "tune", "tune-abc") == 2
    assert not any(p.exists() for p in mine) and all(p.exists() for p in others)
    assert (tmp_path / "ray" / "tune-20260101T000000" / "tune-abc" / "params.json").exists()
    assert delete_checkpoints(resolve_location(tmp_path / "nothing-here"), "tune", "tune-abc") == 0


def test_delete_checkpoints_finds_the_trial_in_one_tuner_experiments_of_both_phases(tmp_path: Path) -> None:
    mine = [
        _checkpoint(tmp_path, "sweep-20260301T000000", "confirm-abc"),
        _checkpoint(tmp_path, "confirm-20260101T000000", "confirm-abc", 2),
    ]  # an experiment from before 0.2.0
    other = _checkpoint(tmp_path, "sweep-20260301T000000", "tune-abc")
    assert delete_checkpoints(resolve_location(tmp_path / "ray"), "confirm", "confirm-abc") == 2
    assert not any(p.exists() for p in mine) and other.exists()


def test_a_kept_trial_keeps_only_its_final_checkpoint_not_a_killed_run_s_partial_ones(tmp_path: Path) -> None:
    partial = [
        _checkpoint(tmp_path, "sweep-20260101T000000", "confirm-abc"),  # the killed driver's run, epoch 1
        _checkpoint(tmp_path, "sweep-20260301T000000", "confirm-abc", 0),  # the resumed run's earlier save
    ]
    final = _checkpoint(tmp_path, "sweep-20260301T000000", "confirm-abc", 1)
    other = _checkpoint(tmp_path, "sweep-20260101T000000", "confirm-def")
    ray = resolve_location(tmp_path / "ray")
    assert delete_checkpoints(ray, "confirm", "confirm-abc", keep_final=True) == 2
    assert not any(p.exists() for p in partial) and final.exists() and other.exists()
    assert delete_checkpoints(ray, "confirm", "confirm-abc", keep_final=True) == 0
    assert sorted(tmp_path.glob("ray/sweep-*/confirm-abc/checkpoint_*/state.pt")) == [final / "state.pt"]


def test_previous_state_reads_the_newest_checkpoint_of_any_driver_s_experiment(tmp_path: Path) -> None:
    import torch

    from tlsweep.engine.trainable import previous_state

    for experiment, epoch in (("tune-20260101T000000", 1), ("sweep-20260301T000000", 3), ("sweep-20260201T000000", 2)):
        path = _checkpoint(tmp_path, experiment, "tune-abc")
        torch.save({"epoch": epoch}, path / "state.pt")
    assert previous_state(resolve_location(tmp_path / "ray"), "tune", "tune-abc") == {"epoch": 3}


@pytest.mark.parametrize("keep", ["none", "confirm", "all"])
def test_the_recorder_deletes_a_recorded_trial_s_checkpoints_unless_kept(tmp_path: Path, keep: str) -> None:
    from test_recorder import _recorder

    spec = demo_spec(checkpoints={"keep": keep})
    recorder = _recorder(tmp_path, spec, flush_interval_s=3600.0)
    saved = {}
    for planned in (tune_trial(spec), confirm_trial(spec)):
        trial = FakeTrial.of(spec, planned, f"ray-{planned.phase}")
        saved[planned.phase] = _checkpoint(tmp_path, f"{planned.phase}-20260101T000000", trial_dirname(planned))
        epochs = [epoch_result(1, 0.3)]
        recorder.on_trial_start(0, [], trial)
        recorder.on_trial_result(0, [], trial, epochs[0])
        recorder.on_trial_result(0, [], trial, final_result(epochs))
        recorder.on_trial_complete(0, [], trial)
    assert all(p.exists() for p in saved.values())  # not yet flushed: a driver dying now reruns them from there
    recorder.flush()
    assert {phase: p.exists() for phase, p in saved.items()} == {
        "tune": keep == "all",
        "confirm": keep in ("confirm", "all"),
    }


def test_a_kept_sweep_checkpoint_is_a_model_for_tlsweep_predict(tmp_path: Path) -> None:
    import torch

    from tlsweep.errors import WeightsError
    from tlsweep.training.backbones import create_model
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.predict import load_trained_model, predict_images

    best = create_model("resnet_tiny", 3, init="scratch", seed=7).state_dict()
    state = {  # what the trainable saves: the training state (tlsweep.training.loop) + class names and image size
        "format": 1,
        "config": TrialConfig(backbone="resnet_tiny", init="scratch").to_dict(),
        "progress": {"epoch": 2, "best_epoch": 1, "best_val_acc": 0.5, "best_state": best},
        "model": create_model("resnet_tiny", 3, init="scratch", seed=8).state_dict(),  # the last epoch's: not used
        "class_names": ["a", "b", "c"],
        "image_size": 16,
    }
    path = tmp_path / "state.pt"
    torch.save(state, path)
    loaded = load_trained_model(path)
    assert (loaded.arch, loaded.class_names, loaded.image_size) == ("resnet_tiny", ["a", "b", "c"], 16)
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in best.items())
    classes, confidence = predict_images(loaded.model, torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    assert classes.shape == confidence.shape == (2,)
    torch.save({**state, "progress": {**state["progress"], "best_state": None}}, path)
    with pytest.raises(WeightsError, match="without best-validation weights"):
        load_trained_model(path)


@pytest.mark.parametrize(
    ("interval", "every_epoch", "phase", "live_epochs"),
    [
        (1e9, False, "confirm", []),  # short epochs: all of them in the final report
        (1e9, True, "confirm", []),  # early stopping never sees confirm trials
        (1e9, True, "tune", [[1], [2], [3]]),  # early stopping decides on each tune epoch
        (0.0, False, "tune", [[1], [2], [3]]),  # epochs longer than the interval: each reported as it ends
    ],
)
def test_the_trainable_reports_short_epochs_together_unless_early_stopping_needs_each(
    monkeypatch: pytest.MonkeyPatch, interval: float, every_epoch: bool, phase: str, live_epochs: list[list[int]]
) -> None:
    import ray
    import torch
    from ray import tune

    from tlsweep.data.types import DatasetTensors, SplitTensors
    from tlsweep.engine import trainable
    from tlsweep.training.config import TrialConfig

    def split(n: int, seed: int) -> SplitTensors:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
        return SplitTensors(images, torch.randint(0, 3, (n,), generator=generator), [])

    data = DatasetTensors(split(24, 0), split(9, 1), split(9, 2), ["a", "b", "c"])
    payload = trainable.TrialPayload.build(data, None, checkpoints=SECONDS_60, report_every_epoch=every_epoch)
    reports: list[dict] = []
    monkeypatch.setattr(trainable, "LIVE_REPORT_INTERVAL_S", interval)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("Context", (), {"get_node_id": lambda self: "n"})())
    config = TrialConfig(backbone="resnet_tiny", init="scratch", epochs=3, batch_size=8, num_threads=1)
    planned = PlannedTrial("t1", phase, {"init": "scratch"}, "recipe", seed=0)
    trainable.sweep_trainable(trainable.trial_message(planned, config, "val_acc"), payload)
    *live, final = reports
    assert [[e["epoch"] for e in r["epochs"]] for r in live] == live_epochs
    assert final["final"] and [h["epoch"] for h in final["history"]] == [1, 2, 3]
