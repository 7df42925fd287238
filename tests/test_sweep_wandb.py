"""The W&B mirror inside a real (tiny) sweep: offline runs per trial, no key anywhere, failures harmless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sweep_fixtures import tiny_spec_dict

from tlsweep.design import trial_counts
from tlsweep.spec_load import parse_spec
from tlsweep.tracking.summary import report_run_id

pytestmark = pytest.mark.ray
PLANTED_KEY = "tlsweepplantedkey0123456789abcdef01234567"


def _small(assets, storage, name):
    data = tiny_spec_dict(assets, storage, name=name)
    data["design"]["factors"]["train_fraction"] = [1.0]
    data["tracking"] = {"wandb": {"mode": "offline", "project": "tlsweep-test", "tags": ["ci"]}}
    return parse_spec(data)


@pytest.fixture(scope="module")
def mirrored(ray_local, tiny_assets, tmp_path_factory):
    """One offline-mirrored sweep with a planted API key, read by the mirror test and the report test."""
    from tlsweep.engine.run import run_sweep

    storage = tmp_path_factory.mktemp("runs")
    spec = _small(tiny_assets, storage, "mirrored")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_API_KEY", PLANTED_KEY)
        patch.delenv("WANDB_MODE", raising=False)
        outcome = run_sweep(spec, live=False, report=True, wandb_mode="offline")
    return spec, storage / "mirrored", outcome


def test_offline_sweep_mirrors_every_trial_without_leaking_the_key(mirrored):
    _, results, outcome = mirrored
    trial_ids = set(pq.read_table(results / "trials.parquet")["trial_id"].to_pylist())
    run_dirs = sorted((results / "wandb").glob("offline-run-*"))
    report_run = report_run_id("mirrored")
    assert {d.name.rsplit("-", 1)[-1] for d in run_dirs} == trial_ids | {report_run.rsplit("-", 1)[-1]}
    assert outcome.report_path == str(results / "report" / "report.md")
    assert outcome.wandb_sync and outcome.wandb_sync.startswith("wandb sync ")
    dry = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "sync", "--dry-run", *map(str, run_dirs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    leaks = [p for p in results.rglob("*") if p.is_file() and PLANTED_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_a_broken_mirror_never_costs_results(ray_local, tiny_assets, tmp_path, monkeypatch):
    import wandb

    from tlsweep.engine.run import run_sweep

    def broken_init(*args, **kwargs):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(wandb, "init", broken_init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    spec = _small(tiny_assets, tmp_path, "broken")
    outcome = run_sweep(spec, live=False, report=False, wandb_mode="offline")
    rows = pq.read_table(tmp_path / "broken" / "trials.parquet").num_rows
    assert not outcome.interrupted and rows == sum(trial_counts(spec).values())


def test_the_report_of_a_real_sweep_matches_its_parquet(mirrored, tmp_path):
    import scipy.stats

    from tlsweep.report import build_report

    spec, results, _ = mirrored
    result = build_report(results, out_dir=tmp_path / "report")  # the sweep's own report/ stays as it wrote it
    trials = pq.read_table(results / "trials.parquet").to_pandas()
    confirm = trials[trials["phase"] == "confirm"]
    a = confirm[confirm["arm"] == "checkpoint"].set_index("seed")["test_acc"].sort_index()
    b = confirm[confirm["arm"] == "scratch"].set_index("seed")["test_acc"].sort_index()
    row = result.cell_table.set_index("cell_id").loc["train_fraction=1|epochs=1"]
    assert row["n_pairs"] == len(a) == len(b) == spec.confirm.seeds
    assert row["difference"] == pytest.approx((a - b).mean())
    if (a - b).std() > 0:
        assert row["p_value"] == pytest.approx(scipy.stats.ttest_rel(a, b, alternative="greater").pvalue)
    # 2 seeds cannot reach alpha with the exact test (its floor is 1/2²); the report says how many would
    assert row["exact_floor"] == pytest.approx(0.25) and not row["robust_reachable"] and row["needed_replicates"] > 2
