"""One training run: schedules, seeding and pairing, resume, divergence, pretrain, CUDA-only switches on CPU."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tlsweep.data.types import DatasetTensors, SplitTensors
from tlsweep.errors import SpecError, StoreError
from tlsweep.training.backbones import backbone_state_dict, create_model
from tlsweep.training.config import TrialConfig
from tlsweep.training.loop import derive_streams, pretrain, resolve_device, run_trial, use_amp
from tlsweep.training.optim import Schedule, build_optimizer, build_scheduler, schedule_for

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")


def _split(n: int, generator: torch.Generator, size: int = 12) -> SplitTensors:
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.randint(0, 90, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    for cls in range(3):  # class c: a brighter channel c, with noise so that the task is not trivial
        images[labels == cls, cls] += 60
    return SplitTensors(images, labels, [f"img{i}.png" for i in range(n)])


@pytest.fixture(scope="module")
def data() -> DatasetTensors:
    generator = torch.Generator().manual_seed(0)
    return DatasetTensors(
        _split(96, generator), _split(40, generator), _split(40, generator), ["young", "mid", "old"], ordinal=True
    )


FAST = TrialConfig(epochs=2, batch_size=16, lr=0.05, train_fraction=0.5, augmentation="flip", num_threads=1)


def _metrics(result: object) -> dict:
    values = result.to_dict()  # type: ignore[attr-defined]
    values.pop("wall_time_s")
    for row in values["history"]:
        row.pop("epoch_time_s")
    return values


# ---------------------------------------------------------------------------------------------- schedules


def test_warmup_is_linear_then_cosine_reaches_zero() -> None:
    schedule = Schedule("cosine", total_steps=20, warmup_steps=4)
    assert [schedule.lr_factor(s) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert schedule.lr_factor(4) == 1.0
    assert schedule.lr_factor(12) == pytest.approx(0.5)
    assert schedule.lr_factor(20) == pytest.approx(0.0, abs=1e-12) and schedule.lr_factor(25) == pytest.approx(
        0.0, abs=1e-12
    )
    assert 0 < schedule.lr_factor(19) < 0.02


def test_step_and_constant_schedules() -> None:
    config = TrialConfig(schedule="step", epochs=6, step_size=2, step_gamma=0.5)
    schedule = schedule_for(config, steps_per_epoch=10)
    assert [schedule.lr_factor(s) for s in (0, 19, 20, 39, 40, 59)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert schedule_for(config.replace(step_size=0, epochs=9), 10).decay_every_steps == 30
    constant = schedule_for(config.replace(schedule="constant", warmup_epochs=0.5), 10)
    assert [constant.lr_factor(s) for s in (0, 4, 5, 50)] == pytest.approx([1 / 6, 5 / 6, 1, 1])


def test_scheduler_steps_the_optimizer_lr_per_step() -> None:
    model = create_model("resnet_tiny", 3, freeze_depth=5)
    config = TrialConfig(lr=0.2, schedule="cosine", epochs=1, warmup_epochs=0.5)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(optimizer, schedule_for(config, steps_per_epoch=4))
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.2 / 3, 0.4 / 3, 0.2, 0.1])


def test_adamw_and_unknown_optimizer() -> None:
    model = create_model("resnet_tiny", 3)
    optimizer = build_optimizer(TrialConfig(optimizer="adamw", weight_decay=0.05, lr=1e-3), model)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05
    sgd = build_optimizer(TrialConfig(momentum=0.8), model)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"] is False


# ---------------------------------------------------------------------------------------------- run_trial


def test_run_reports_every_epoch_and_is_deterministic(data: DatasetTensors) -> None:
    reported: list[dict] = []
    first = run_trial(FAST, data, report=lambda metrics, get_state: reported.append(metrics))
    assert [m["epoch"] for m in reported] == [1, 2]
    assert set(reported[0]) == {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"}
    assert first.n_train == 49  # stratified rounding per class; 49 % 16 == 1, so the 1-image batch is dropped
    assert reported[1]["step"] == first.optimizer_steps == 2 * 3
    assert first.status == "ok" and first.n_val == 40 and first.n_test == 40
    assert first.chance == pytest.approx(1 / 3) and first.num_classes == 3
    assert first.test_mae is not None and 0 <= first.test_off_by_one <= 1  # type: ignore[operator]
    json.dumps(first.to_dict())
    assert "best_state" not in first.to_dict()
    assert _metrics(run_trial(FAST, data)) == _metrics(first)


def test_seeds_differ_and_arms_share_subset_and_order(data: DatasetTensors, tmp_path: Path) -> None:
    scratch = run_trial(FAST.replace(epochs=1), data)
    other_seed = run_trial(FAST.replace(epochs=1, seed=1), data)
    assert other_seed.subset_hash != scratch.subset_hash
    assert _metrics(other_seed)["history"] != _metrics(scratch)["history"]
    checkpoint = tmp_path / "body.pt"
    torch.save(backbone_state_dict(create_model("resnet_tiny", 5, seed=7)), checkpoint)
    arms = [FAST.replace(epochs=1, init=f"checkpoint:{checkpoint}"), FAST.replace(epochs=1, freeze_depth=5, lr=0.1)]
    assert {run_trial(arm, data).subset_hash for arm in arms} == {scratch.subset_hash}
    assert derive_streams(0).order == derive_streams(0).order != derive_streams(1).order


def test_test_metrics_use_the_best_validation_weights(data: DatasetTensors) -> None:
    result = run_trial(FAST.replace(epochs=3), data)
    assert result.best_val_acc == max(row["val_acc"] for row in result.history)
    model = create_model("resnet_tiny", 3)
    model.load_state_dict(result.best_state)  # type: ignore[arg-type]
    from tlsweep.training.evaluate import classification_metrics, predict_probabilities

    probabilities, labels, loss = predict_probabilities(
        model, data.test, np.arange(len(data.test)), batch_size=64, device=torch.device("cpu")
    )
    expected = classification_metrics(probabilities, labels, ordinal=True, loss=loss)
    assert result.test_acc == expected["acc"] and result.test_loss == pytest.approx(expected["loss"])


def test_resume_from_a_reported_state_gives_the_same_run(data: DatasetTensors) -> None:
    config = FAST.replace(epochs=3, augmentation="flip_color", schedule="cosine", warmup_epochs=0.5)
    uninterrupted = run_trial(config, data)
    states: list[dict] = []
    run_trial(
        config.replace(epochs=3),
        data,
        report=lambda m, get_state: states.append(get_state()) if m["epoch"] == 2 else None,
    )
    buffer = io.BytesIO()
    torch.save(states[0], buffer)  # what the sweep engine does with it (a Ray Tune checkpoint)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    resumed_epochs: list[int] = []
    resumed = run_trial(config, data, resume_state=restored, report=lambda m, g: resumed_epochs.append(m["epoch"]))
    assert resumed_epochs == [3]
    assert _metrics(resumed) == _metrics(uninterrupted)
    with pytest.raises(StoreError, match=r"lr: saved 0.05 vs now 0.1"):
        run_trial(config.replace(lr=0.1), data, resume_state=restored)


def test_huge_learning_rate_diverges_as_an_outcome(data: DatasetTensors) -> None:
    result = run_trial(FAST.replace(lr=1e6), data)
    assert result.status == "diverged"
    assert result.test_acc == result.best_val_acc == result.test_balanced_acc == pytest.approx(1 / 3)
    assert math.isnan(result.test_loss) and math.isnan(result.test_mae)  # type: ignore[arg-type]
    assert result.best_epoch == 0 and result.best_state is None and result.epochs_run >= 1


def test_cuda_switches_are_off_on_cpu() -> None:
    device = resolve_device("cpu")
    assert use_amp(TrialConfig(amp=True), device) is False
    model = create_model("resnet_tiny", 3, seed=0).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        converted = model.to(memory_format=torch.channels_last)
        assert torch.allclose(converted(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)


def test_pretrain_saves_a_body_checkpoint_usable_as_init(data: DatasetTensors, tmp_path: Path) -> None:
    out = tmp_path / "ckpt" / "resnet_tiny-source.pt"
    metrics = pretrain(FAST.replace(train_fraction=1.0, epochs=1), data, out)
    assert metrics["status"] == "ok" and out.is_file()
    saved = torch.load(out, weights_only=True)
    assert saved["arch"] == "resnet_tiny" and saved["classes"] == ["young", "mid", "old"]
    assert not any(key.startswith("fc.") for key in saved["backbone"])
    model = create_model("resnet_tiny", 4, init=f"checkpoint:{out}")
    assert torch.equal(model.conv1.weight, saved["backbone"]["conv1.weight"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer in 1..100000, got 0"),
        ({"train_fraction": 1.5}, r"train_fraction must be in \(0, 1\], got 1.5"),
        ({"augmentation": "mixup"}, "augmentation must be one of none, flip, flip_color, trivial"),
        ({"warmup_epochs": 5.0}, r"warmup_epochs must be in \[0, epochs\], got 5.0"),
        ({"init": "imagenet1k"}, "'imagenet1k' is not understood"),
        ({"freeze_depth": 9}, "freeze_depth must be an integer in 0..5"),
        ({"backbone_lr_mult": 0.0}, "backbone_lr_mult must be > 0"),
    ],
)
def test_invalid_settings_are_named_before_training(data: DatasetTensors, change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        run_trial(FAST.replace(**change), data)
