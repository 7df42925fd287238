"""The W&B mirror inside a real (tiny) sweep: offline runs per trial, no key anywhere, failures harmless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sweep_fixtures import tiny_assets, tiny_spec_dict  # noqa: F401 - fixture

from tlsweep.spec import parse_spec

pytestmark = pytest.mark.ray
PLANTED_KEY = "tlsweepplantedkey0123456789abcdef01234567"


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20,
             log_to_driver=False)  # fmt: skip
    yield
    ray.shutdown()


def _small(assets, storage, name):
    data = tiny_spec_dict(assets, storage, name=name)
    data["design"]["factors"]["train_fraction"] = [1.0]
    data["tracking"] = {"wandb": {"mode": "offline", "project": "tlsweep-test", "tags": ["ci"]}}
    return parse_spec(data)


def test_offline_sweep_mirrors_every_trial_without_leaking_the_key(ray_local, tiny_assets, tmp_path, monkeypatch):  # noqa: F811
    from tlsweep.sweep import run_sweep

    monkeypatch.setenv("WANDB_API_KEY", PLANTED_KEY)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    spec = _small(tiny_assets, tmp_path, "mirrored")
    outcome = run_sweep(spec, live=False, report=False, wandb_mode="offline")
    results = tmp_path / "mirrored"
    trial_ids = set(pq.read_table(results / "trials.parquet")["trial_id"].to_pylist())
    run_dirs = sorted((results / "wandb").glob("offline-run-*"))
    assert {d.name.rsplit("-", 1)[-1] for d in run_dirs} == trial_ids  # one offline run per trial, id = trial id
    assert outcome.wandb_sync and outcome.wandb_sync.startswith("wandb sync ")
    dry = subprocess.run([str(Path(sys.executable).parent / "wandb"), "sync", "--dry-run", *map(str, run_dirs)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    leaks = [p for p in results.rglob("*") if p.is_file() and PLANTED_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_a_broken_mirror_never_costs_results(ray_local, tiny_assets, tmp_path, monkeypatch):  # noqa: F811
    import wandb

    from tlsweep.sweep import run_sweep

    def broken_init(*args, **kwargs):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(wandb, "init", broken_init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    spec = _small(tiny_assets, tmp_path, "broken")
    outcome = run_sweep(spec, live=False, report=False, wandb_mode="offline")
    rows = pq.read_table(tmp_path / "broken" / "trials.parquet").num_rows
    assert not outcome.interrupted and rows == sum(spec.trial_counts().values())
