"""A tiny generated dataset, a tiny backbone checkpoint and tiny sweep specs, shared by the sweep tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsweep.engine.worker_setup import worker_runtime_env

TINY_AGE = {
    "format": "synthetic",
    "task": "age",
    "seed": 0,
    "resolution": 16,
    "n_identities": 24,
    "images_per_identity": 5,
}


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated 16 px age dataset and a backbone checkpoint of resnet_tiny (random weights: fast, valid)."""
    import torch

    from tlsweep.data.dataset_spec import parse_dataset_spec
    from tlsweep.data.loading import load_dataset
    from tlsweep.training.backbones import backbone_state_dict, create_model

    root = tmp_path_factory.mktemp("assets")
    data_root = root / "age"
    load_dataset(parse_dataset_spec({**TINY_AGE, "root": str(data_root)}), image_size=16)
    checkpoint = root / "backbone.pt"
    torch.manual_seed(0)
    torch.save({"backbone": backbone_state_dict(create_model("resnet_tiny", 8))}, checkpoint)
    return {"data": data_root, "checkpoint": checkpoint}


def tiny_spec_dict(assets: dict[str, Path], storage: Path | str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "tiny",
        "dataset": {**TINY_AGE, "root": str(assets["data"])},
        "model": {
            "backbone": "resnet_tiny",
            "image_size": 16,
            "batch_size": 16,
            "pretrained": {"checkpoint": str(assets["checkpoint"])},
        },
        "design": {
            "factors": {"init": ["checkpoint", "scratch"], "train_fraction": [0.5, 1.0], "epochs": [1]},
            "tune": {"lr": {"type": "float", "low": 1.0e-3, "high": 0.3, "log": True}},
            "recipe": {"lr": 0.01},
            "budget": {"trials_per_cell": 2, "sampler": "tpe"},
        },
        "confirm": {"seeds": 2, "configs": ["best"]},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1},
        "failures": {"max_retries": 1},
        "storage": str(storage),
        "tracking": {"wandb": {"mode": "disabled"}},
    }
    for dotted, value in changes.items():
        node = spec
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return spec


def smallest_spec_dict(assets: dict[str, Path], storage: Path | str, **changes: Any) -> dict[str, Any]:
    """``tiny_spec_dict`` cut to one cell, one tune trial per arm and one seed: 4 trials."""
    return tiny_spec_dict(
        assets,
        storage,
        **{
            "design__factors": {"init": ["checkpoint", "scratch"], "train_fraction": [1.0], "epochs": [1]},
            "design__budget": {"trials_per_cell": 1, "sampler": "tpe"},
            "confirm__seeds": 1,
            **changes,
        },
    )


TEST_RAY = {
    "address": "local",
    "num_cpus": 2,
    "include_dashboard": False,
    "object_store_memory": 80 * 2**20,
    "log_to_driver": False,
    "runtime_env": worker_runtime_env(),  # as run_sweep starts Ray
}


@pytest.fixture(scope="session")
def _ray_session() -> Iterator[None]:
    """Shuts down, at the end of the test session, the Ray that ``ray_local`` started."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_local(_ray_session: None) -> None:
    """The test session's private local Ray (2 CPUs, 80 MB object store, no dashboard): started by the first module
    that asks for it and shared by every later one (``run_sweep`` uses a Ray that is already up)."""
    import ray

    if not ray.is_initialized():
        ray.init(**TEST_RAY)


@pytest.fixture(scope="module")
def ray_stopped() -> None:
    """No Ray in this process, for a module that starts its own (a ``Cluster``, a ``tlsweep run`` in this process):
    the shared one is shut down and the next ``ray_local`` starts it again."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def assert_journal_matches_parquet(results: Path) -> None:
    """optuna.journal holds every recorded trial once, in its phase × cell × arm study, in the right state."""
    import optuna
    import pyarrow.parquet as pq
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from tlsweep.tracking.optuna_mirror import study_name

    rows = pq.read_table(results / "trials.parquet").to_pylist()
    storage = JournalStorage(JournalFileBackend(str(results / "optuna.journal")))
    mirrored = {}
    for summary in optuna.get_all_study_summaries(storage):
        for trial in optuna.load_study(study_name=summary.study_name, storage=storage).trials:
            assert trial.user_attrs["trial_id"] not in mirrored, "a trial mirrored twice"
            mirrored[trial.user_attrs["trial_id"]] = (summary.study_name, trial)
    assert set(mirrored) == {r["trial_id"] for r in rows}
    states = {"ok": "COMPLETE", "diverged": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
    for row in rows:
        name, trial = mirrored[row["trial_id"]]
        assert name == study_name(row["phase"], row["cell_id"], row["arm"]) and trial.user_attrs["seed"] == row["seed"]
        assert trial.state.name == states[row["status"]]
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(row["objective"])
