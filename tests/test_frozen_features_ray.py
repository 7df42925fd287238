"""Frozen-layer activations shared across Ray worker processes of a node: computed once, under the file lock, even
when trials start together."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore:TF32 acceleration")]


def _trial(cache_dir: str, seed: int, lr: float) -> dict[str, Any]:
    import os

    import torch

    from tlsweep.data.types import DatasetTensors, SplitTensors
    from tlsweep.training import frozen_features
    from tlsweep.training.config import TrialConfig
    from tlsweep.training.loop import run_trial

    generator = torch.Generator().manual_seed(0)  # the same dataset in every process

    def split(n: int) -> SplitTensors:
        labels = torch.randint(0, 3, (n,), generator=generator)
        images = torch.randint(0, 256, (n, 3, 16, 16), generator=generator, dtype=torch.uint8)
        return SplitTensors(images, labels, [])

    data = DatasetTensors(split(64), split(16), split(16), ["a", "b", "c"])
    frozen_features._CACHE = frozen_features.FeatureCache(cache_dir)
    body = Path(cache_dir).parent / "body.pt"
    config = TrialConfig(
        init=f"checkpoint:{body}",
        freeze_depth=5,
        epochs=2,
        batch_size=16,
        lr=lr,
        seed=seed,
        augmentation="flip",
        num_threads=1,
    )
    result = run_trial(config, data)
    return {"computed": frozen_features._CACHE.computed, "status": result.status, "pid": os.getpid()}


@pytest.mark.slow
def test_trials_in_different_worker_processes_compute_the_features_once(ray_local: None, tmp_path: Path) -> None:
    import ray
    import torch

    from tlsweep.training.backbones import backbone_state_dict, create_model

    torch.save({"backbone": backbone_state_dict(create_model("resnet_tiny", 3, seed=1))}, tmp_path / "body.pt")
    cache_dir = str(tmp_path / "features")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests
    task = ray.remote(num_cpus=1, max_calls=1)(_trial)  # max_calls=1: every trial in a fresh worker process
    together = ray.get([task.remote(cache_dir, seed, lr) for seed, lr in ((0, 0.01), (1, 0.1))])
    later = ray.get(task.remote(cache_dir, 2, 0.05))
    assert {row["status"] for row in [*together, later]} == {"ok"}
    assert len({row["pid"] for row in [*together, later]}) == 3
    assert sum(row["computed"] for row in together) == 4  # train, flipped train, val, test: once between them
    assert later["computed"] == 0
    assert len(list(Path(cache_dir).glob("*.npy"))) == 4
