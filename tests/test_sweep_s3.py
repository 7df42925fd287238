"""A sweep whose results live in an S3 bucket (moto's server on loopback) resumes from the bucket alone."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confirm_plans import plan_confirm
from sweep_fixtures import tiny_spec_dict

from tlsweep.design import trial_counts
from tlsweep.results.store import ResultsStore
from tlsweep.spec_load import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_sweep_on_s3_resumes_from_storage_alone(ray_local, s3_env, tiny_assets, tmp_path, monkeypatch) -> None:
    from tlsweep.engine.run import run_sweep

    monkeypatch.chdir(tmp_path)
    storage = s3_env.uri("sweeps")
    spec = parse_spec(tiny_spec_dict(tiny_assets, storage, name="remote"))
    first = run_sweep(spec, live=False, report=True)
    store = ResultsStore(f"{storage}/remote")
    trials = store.read_trials()
    assert first.location == f"{storage}/remote" and trials.num_rows == sum(trial_counts(spec).values())
    assert store.read_text("report/report.md")  # the report was rendered from a download and uploaded
    assert not list(tmp_path.glob("**/trials.parquet"))  # nothing of the results lives on this machine

    # a head node lost mid-confirm: the last trials never reached storage
    confirm_ids = pc.filter(trials, pc.equal(trials["phase"], "confirm"))["trial_id"].to_pylist()
    lost = set(confirm_ids[:3])
    kept = trials.filter(pc.invert(pc.is_in(trials["trial_id"], value_set=pa.array(sorted(lost)))))
    store.write_trials(kept)
    second = run_sweep(spec, live=False, report=False)
    assert second.trials_recorded == len(lost)
    rows = ResultsStore(f"{storage}/remote").read_trials().to_pylist()
    assert len(rows) == len({r["trial_id"] for r in rows}) == sum(trial_counts(spec).values())
    expected, _ = plan_confirm(spec, [r for r in rows if r["phase"] == "tune"])
    assert {p.trial_id for p in expected} == {r["trial_id"] for r in rows if r["phase"] == "confirm"}
    fs = s3_env.endpoint.filesystem()
    from pyarrow.fs import FileSelector

    ray_state = fs.get_file_info(FileSelector(f"{s3_env.name}/sweeps/remote/ray", recursive=False))
    assert ray_state  # Ray Tune's experiment state went to the bucket too
    # and no checkpoint of a recorded trial stayed there (checkpoints.keep: none)
    everything = fs.get_file_info(FileSelector(f"{s3_env.name}/sweeps/remote/ray", recursive=True))
    assert not [i.path for i in everything if "/checkpoint_" in i.path]
