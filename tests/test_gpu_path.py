"""The GPU path's device-independent logic, on CPU: staging once per process, deferred divergence checks, batched
evaluation, and the per-trial GPU memory estimate that fails before launch when fractional GPUs cannot fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sweep_fixtures import tiny_spec_dict

from tlsweep.data.types import DatasetTensors, SplitTensors
from tlsweep.design import base_trial_config
from tlsweep.errors import SpecError
from tlsweep.spec_load import parse_spec
from tlsweep.training import device as gpu
from tlsweep.training import loop
from tlsweep.training.config import TrialConfig
from tlsweep.training.evaluate import predict_probabilities

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration")
GIB = 2**30


def _split(n: int, seed: int, size: int = 12) -> SplitTensors:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    return SplitTensors(images, labels, [])


@pytest.fixture(scope="module")
def data() -> DatasetTensors:
    return DatasetTensors(_split(64, 0), _split(20, 1), _split(20, 2), ["a", "b", "c"])


def test_the_dataset_is_staged_once_per_process_and_replaced_by_another(data: DatasetTensors) -> None:
    assert gpu.stage_dataset(data, torch.device("cpu")) is data
    meta = torch.device("meta")  # stands in for a GPU: a copy on another device
    staged = gpu.stage_dataset(data, meta)
    assert staged.train.images.device == meta and staged.test.labels.device == meta
    assert staged.train.images.dtype == torch.uint8 and staged.train.images.shape == data.train.images.shape
    assert gpu.stage_dataset(data, meta) is staged, "a second trial in the same worker copied the dataset again"
    other = DatasetTensors(_split(8, 3), _split(4, 4), _split(4, 5), ["a", "b", "c"])
    assert gpu.stage_dataset(other, meta) is not staged
    assert len(gpu._STAGED) == 1, "only one dataset is kept on the device"


def test_divergence_without_a_host_read_per_step_is_still_an_outcome(
    data: DatasetTensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrialConfig(epochs=3, batch_size=16, lr=1e8, num_threads=1, device="cpu")
    per_step = loop.run_trial(config, data)
    monkeypatch.setattr(loop, "checks_each_step", lambda device: False)  # as on CUDA: one check per epoch
    per_epoch = loop.run_trial(config, data)
    assert per_step.status == per_epoch.status == "diverged"
    assert per_epoch.test_acc == per_step.test_acc == pytest.approx(1 / 3)
    assert per_epoch.optimizer_steps >= per_step.optimizer_steps  # the epoch ran to its end before the check


def test_device_side_accumulation_reproduces_the_per_step_one(
    data: DatasetTensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrialConfig(epochs=2, batch_size=16, lr=0.05, num_threads=1, device="cpu", augmentation="flip")
    per_step = loop.run_trial(config, data)
    monkeypatch.setattr(loop, "checks_each_step", lambda device: False)
    deferred = loop.run_trial(config, data)
    assert [r["train_loss"] for r in per_step.history] == [r["train_loss"] for r in deferred.history]
    assert (per_step.test_acc, per_step.test_loss) == (deferred.test_acc, deferred.test_loss)


def test_batched_evaluation_is_independent_of_the_batch_size(data: DatasetTensors) -> None:
    from tlsweep.training.backbones import create_model

    model = create_model("resnet_tiny", 3, seed=0)
    indices = np.arange(len(data.test))
    one = predict_probabilities(model, data.test, indices, batch_size=20, device=torch.device("cpu"))
    many = predict_probabilities(model, data.test, indices, batch_size=3, device=torch.device("cpu"))
    np.testing.assert_allclose(one[0], many[0], atol=1e-6)
    np.testing.assert_array_equal(one[1], data.test.labels.numpy())
    assert one[2] == pytest.approx(many[2], rel=1e-6)


# ---------------------------------------------------------------------------------------------- memory estimate


def test_activation_bytes_match_a_real_forward_pass() -> None:
    from torch import nn

    from tlsweep.training.backbones import create_model

    config = TrialConfig(backbone="resnet_tiny", batch_size=8, eval_batch_size=4, amp=False)
    train, evaluation = gpu.activation_bytes(config, 5, 32)
    model, outputs = create_model("resnet_tiny", 5), []
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(
                lambda m, i, o: outputs.append(o.numel()) if isinstance(o, torch.Tensor) else None
            )
    model(torch.zeros(1, 3, 32, 32))
    assert train == sum(outputs) * 4 * 8 and evaluation == max(outputs) * 4 * 2 * 4
    assert isinstance(model.fc, nn.Linear)
    assert gpu.activation_bytes(config.replace(amp=True), 5, 32)[0] == train // 2  # bf16 under autocast


def test_the_estimate_grows_with_what_a_trial_holds() -> None:
    base = TrialConfig(backbone="resnet18", batch_size=64, eval_batch_size=256)
    data_bytes = 10_000 * 3 * 128 * 128
    estimate = gpu.estimate_trial_bytes(base, 8, 128, data_bytes)
    assert estimate > data_bytes + gpu.CUDA_CONTEXT_BYTES
    assert gpu.estimate_trial_bytes(base.replace(batch_size=256), 8, 128, data_bytes) > estimate
    assert gpu.estimate_trial_bytes(base, 8, 224, data_bytes) > estimate
    assert gpu.estimate_trial_bytes(base.replace(optimizer="adamw"), 8, 128, data_bytes) > estimate
    probe = gpu.estimate_trial_bytes(base.replace(freeze_depth=5), 8, 128, data_bytes)
    assert probe < estimate, "a linear probe keeps no activations for backward and no body optimizer state"
    assert gpu.estimate_trial_bytes(base, 8, 128, 2 * data_bytes) == estimate + data_bytes


def test_trials_that_cannot_share_a_gpu_fail_before_launch_with_the_fix() -> None:
    gpu.check_gpu_fit(10 * GIB, 0.25, 80 * GIB)  # 20 GiB each: fits
    with pytest.raises(SpecError) as caught:
        gpu.check_gpu_fit(30 * GIB, 0.25, 80 * GIB, source="sweeps/big.yaml")
    message = str(caught.value)
    assert "sweeps/big.yaml" in message and "resources.gpus_per_trial: 0.25" in message
    assert "20.0 GiB of a 80.0 GiB GPU" in message and "about 30.0 GiB" in message
    assert "at least 0.38" in message and "batch_size" in message
    gpu.check_gpu_fit(30 * GIB, 2.0, 80 * GIB)  # more than one GPU: the whole of one is available


def test_the_sweep_estimate_covers_every_arm_and_is_checked_against_the_gpu(
    data: DatasetTensors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlsweep.engine import run as engine_run
    from tlsweep.engine import trainable

    assets = {"data": tmp_path / "data", "checkpoint": tmp_path / "backbone.pt"}
    spec = parse_spec(tiny_spec_dict(assets, tmp_path / "runs"))
    assert engine_run.gpu_trial_estimate(spec, data) is None  # no GPU asked for
    spec = parse_spec(tiny_spec_dict(assets, tmp_path / "runs", resources__gpus_per_trial=0.25))
    estimate = engine_run.gpu_trial_estimate(spec, data)
    assert estimate is not None and estimate["gpus_per_trial"] == 0.25
    scratch = base_trial_config(spec)  # the scratch arm trains the whole body: the larger of the two
    assert estimate["bytes"] == gpu.estimate_trial_bytes(scratch, 3, 16, gpu.dataset_bytes(data))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: type("P", (), {"total_memory": GIB})())
    with pytest.raises(SpecError, match=r"gpus_per_trial: 0\.25 gives each trial 0\.2 GiB of a 1\.0 GiB GPU"):
        engine_run.check_gpu_memory(spec, data, source="tiny.yaml")
    with pytest.raises(SpecError, match="the sweep's trial"):
        trainable._check_gpu(estimate, TrialConfig(device="cuda:0"))
    roomy = {**estimate, "gpus_per_trial": 1.0}
    trainable._check_gpu(roomy, TrialConfig(device="cuda:0"))  # fits in a whole GPU
