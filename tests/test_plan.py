"""``tlsweep plan``: the design's work, probe timings on the tiny spec (no Ray) and the smallest detectable effect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from cli_exit import run_tlsweep
from report_fixtures import simulate_results
from statsmodels.stats.power import TTestPower
from sweep_fixtures import tiny_spec_dict

from tlsweep.design import cell_id, studies, study_trial_counts, trial_counts
from tlsweep.plan import ProbeTiming, epoch_seconds, probe_plans, sweep_work
from tlsweep.spec_load import load_spec


def _spec_file(tmp_path: Path, assets: dict[str, Path], **changes: Any) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict(assets, tmp_path / "runs", **changes)))
    return path


def _plan_json(args: list[object], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    code, out, err = run_tlsweep(["plan", *args, "--json"], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out)


def test_work_follows_the_design(tiny_assets: dict[str, Path], tmp_path: Path) -> None:
    spec = load_spec(
        _spec_file(
            tmp_path,
            tiny_assets,
            design__factors={"init": ["checkpoint", "scratch"], "train_fraction": [0.25, 0.5, 1.0], "epochs": [1, 3]},
        )
    )
    work = sweep_work(spec)
    counts = study_trial_counts(spec)
    assert {(w.phase, w.cell, w.arm): w.trials for w in work} == counts
    assert sum(w.trial_epochs for w in work) == sum(
        n * (3 if "epochs=3" in cell else 1) for (_, cell, _), n in counts.items()
    )
    plans = probe_plans(spec)  # per arm: the smallest and the largest fraction, whatever the epochs
    assert sorted((p.key, p.train_fraction) for p in plans) == [
        ("arm=checkpoint", 0.25),
        ("arm=checkpoint", 1.0),
        ("arm=scratch", 0.25),
        ("arm=scratch", 1.0),
    ]
    assert len(studies(spec)) == 12
    timings = [ProbeTiming("arm=scratch", 0.25, (1.0,), 0.5, 10), ProbeTiming("arm=scratch", 1.0, (4.0,), 0.5, 40)]
    assert epoch_seconds(timings, "arm=scratch", 0.5) == pytest.approx(2.0)  # affine in the fraction


def test_plan_times_one_short_trial_per_arm(
    tiny_assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = _spec_file(tmp_path, tiny_assets)
    spec = load_spec(spec_path)
    plan = _plan_json([spec_path], capsys, monkeypatch)
    counts = trial_counts(spec)
    est = plan["estimate"]
    assert (est["tune_trials"], est["confirm_trials"]) == (counts["tune"], counts["confirm"])
    assert est["trial_epochs"] == sum(counts.values())  # every cell trains 1 epoch
    assert plan["device"] == "cpu" and plan["probe_epochs"] == 1
    assert sorted((p["key"], p["train_fraction"]) for p in plan["probes"]) == [
        ("arm=checkpoint", 0.5),
        ("arm=checkpoint", 1.0),
        ("arm=scratch", 0.5),
        ("arm=scratch", 1.0),
    ]
    assert all(len(p["epoch_seconds"]) == 1 and p["epoch_seconds"][0] > 0 for p in plan["probes"])
    seconds = 0.0
    for probe in plan["probes"]:  # each arm has two cells (0.5, 1.0), each timed by its own probe
        arm_trials = (counts["tune"] + counts["confirm"]) / 4
        seconds += arm_trials * (
            probe["epoch_seconds"][0] + max(p["one_off_s"] for p in plan["probes"] if p["key"] == probe["key"])
        )
    assert est["trial_hours"] * 3600 == pytest.approx(seconds, rel=1e-6)
    assert est["concurrency"] == 1  # resources.max_concurrent_trials
    assert est["wall_hours"] == pytest.approx(est["trial_hours"])
    assert est["resource_hours"] == {"CPU": pytest.approx(est["trial_hours"])}
    assert plan["detectable"]["cells"] == [] and plan["results"] is None

    code, out, _ = run_tlsweep(
        ["plan", spec_path, "--probe-epochs", "2", "--set", "confirm.seeds=3"], capsys, monkeypatch
    )
    assert code == 0
    assert "checkpoint" in out and "scratch" in out and "total" in out
    assert f"{counts['tune']} + {counts['tune'] // 2 * 3}" in out  # --set applies: 3 seeds per study
    assert "estimate from 4 probe(s) of 2 epoch(s) on THIS machine's cpu" in out
    assert "d_z = " in out and "no tune results yet" in out


def test_no_probe_is_design_arithmetic_only(
    tiny_assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = _spec_file(tmp_path, tiny_assets, design__early_stopping={"grace_period": 1})
    plan = _plan_json([spec_path, "--no-probe"], capsys, monkeypatch)
    assert plan["probes"] == [] and plan["device"] is None and plan["estimate"]["trial_hours"] is None
    assert plan["estimate"]["early_stopping"] is True
    expected = TTestPower().solve_power(nobs=2, alpha=0.05 / 4, power=0.8, alternative="larger")
    assert plan["detectable"]["d_z"] == pytest.approx(expected, rel=1e-5)
    assert plan["detectable"]["threshold"] == pytest.approx(0.05 / 4)  # 2 cells x 1 comparison, both directions
    code, out, _ = run_tlsweep(["plan", spec_path, "--no-probe"], capsys, monkeypatch)
    assert code == 0 and "no probe (--no-probe)" in out and "upper bound: ASHA" in out


def test_the_readme_example_is_what_plan_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"
    plan = _plan_json([demo, "--no-probe"], capsys, monkeypatch)
    est, found = plan["estimate"], plan["detectable"]
    counts = trial_counts(load_spec(demo))
    assert (est["tune_trials"], est["confirm_trials"]) == (counts["tune"], counts["confirm"])
    readme = (demo.parents[1] / "README.md").read_text()
    example = (
        f"prints {est['tune_trials']} + {est['confirm_trials']} trials (tune + confirm) and {est['trial_epochs']} "
        f"trial-epochs, and\nd_z = {found['d_z']:.2f} for {found['seeds']} paired seeds at the threshold "
        f"{found['threshold']:.3g} ({found['tests']} tests, Holm)"
    )
    assert example in readme


def test_a_bad_spec_is_exit_2_without_traceback(
    tiny_assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = _spec_file(tmp_path, tiny_assets)
    code, _, err = run_tlsweep(["plan", spec_path, "--set", "confirm.seeds=0", "--no-probe"], capsys, monkeypatch)
    assert code == 2 and "confirm.seeds" in err and str(spec_path) in err
    code, _, err = run_tlsweep(["plan", tmp_path / "missing.yaml"], capsys, monkeypatch)
    assert code == 2 and "missing.yaml" in err
    missing = _spec_file(
        tmp_path, tiny_assets, model__backbone="resnet18", design__factors={"init": ["imagenet", "scratch"]}
    )
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    code, _, err = run_tlsweep(["plan", missing], capsys, monkeypatch)  # the probe needs the weights
    assert code == 2 and "tlsweep weights download" in err


def test_detectable_difference_from_recorded_tune_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = simulate_results(tmp_path / "runs" / "demo", seeds=6, trials_per_cell=5)
    spec_path = results / "spec.resolved.yaml"
    plan = _plan_json([spec_path, "--no-probe", "--storage", tmp_path / "runs"], capsys, monkeypatch)
    found = plan["detectable"]
    assert plan["results"].endswith("runs/demo") and found["metric"] == "objective"  # tune rows hold no test_acc
    rows = [r for r in pq.read_table(results / "trials.parquet").to_pylist() if r["phase"] == "tune"]
    d_z = TTestPower().solve_power(nobs=6, alpha=0.05 / 8, power=0.8, alternative="larger")  # 4 cells, 2 directions
    assert found["d_z"] == pytest.approx(d_z, rel=1e-5)
    assert len(found["cells"]) == 4
    for cell in found["cells"]:
        by_arm = {
            arm: {
                r["tune_index"]: r["objective"]
                for r in rows
                if cell_id({"train_fraction": r["train_fraction"], "epochs": r["epochs"]}) == cell["cell"]
                and r["arm"] == arm
            }
            for arm in ("checkpoint", "scratch")
        }
        diffs = [by_arm["checkpoint"][i] - by_arm["scratch"][i] for i in range(5)]
        assert cell["pairs"] == 5 and cell["comparison"] == "checkpoint vs scratch"
        assert cell["sd"] == pytest.approx(float(np.std(diffs, ddof=1)))
        assert cell["difference"] == pytest.approx(d_z * cell["sd"], rel=1e-5)
    code, out, _ = run_tlsweep(["plan", spec_path, "--no-probe", "--storage", tmp_path / "runs"], capsys, monkeypatch)
    assert code == 0 and "SD of paired tune differences (val_acc, the objective)" in out and "upper bound" in out
